// The `smtplb` command line. Every failure ends in a one-paragraph message and a non-zero
// exit status, never a stack trace.
import type { ClusterView, GatewayStatus, OverrideView, QueueMessage, RouteExplain, SuspensionView } from '../admin/api-types.js';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, configWarnings, loadConfig } from '../config/load.js';
import { parseDuration } from '../config/units.js';
import { createLogger, printable } from '../core/logger.js';
// The daemon, the demo, the sink and the sender are loaded by the commands that run them: an
// admin command (status, queue, suspend) starts in a fraction of the time without them.
import { StartError } from '../runtime/start-error.js';
import { admin, configOf, UsageError } from './admin-client.js';
import { runSuppression, SUPPRESSION_USAGE } from './suppression.js';

const USAGE = `usage: smtplb <command> [options]

  start  -c FILE            run in the foreground
  check  -c FILE            validate a config (exit 0 valid, 1 with errors)
  demo                      two demo MTAs on loopback with smtplb in front of them
  status -c FILE [--json]   pools, servers and health from a running smtplb
  status -c FILE --watch [--interval 2s]    the same, redrawn in place until Ctrl-C
  server drain|enable|disable POOL SERVER -c FILE    change a server at run time
  server weight POOL SERVER N -c FILE
  queue list [--domain D] [--pool P] [--state S] [--older-than 1h] -c FILE [--json]
  queue show|hold|release|delete|bounce|flush ID -c FILE [--json]
  queue flush -c FILE [--domain D]    retry every queued message now
  route explain ADDRESS [--from A] [--user U] [--class C] [--listener L] -c FILE [--json]
  suspend DESTINATION --pool P --for 2h --reason "..." [--who NAME] -c FILE
  suspensions -c FILE [--json]        named suspensions in force
  unsuspend ID -c FILE                cancel a suspension
  override DESTINATION --pool P [--rate 100/min] [--concurrency N] --for 2h --reason "..." -c FILE
  overrides -c FILE [--json]          shaping overrides in force
  unoverride ID -c FILE               cancel an override
  throttles -c FILE [--json]          pairs slowed down by adaptive backoff
${SUPPRESSION_USAGE}  dkim keygen --domain D --selector S [--algorithm rsa|ed25519] [--bits 2048] [--out KEYFILE]
  doctor -c FILE [--domain D] [--resolver HOST:PORT] [--json]    SPF, DKIM, DMARC, PTR/HELO, MX checks (exit 1 on errors)
  send --server HOST:PORT --from A --to B [--count N] [--concurrency C] [--tls]
       [--tls-on-connect] [--auth-user U --auth-password P] [--header "K: V"]
  passwd [--password P]     print a password hash for users (reads stdin without --password)
  sink [--listen H:P] [--stats H:P] [-c sink.yaml] [--rule 'k=v,...']... [--verbose]
                            a test MTA that counts mail and misbehaves on request (smtplb sink --help)
`;

function fail(message: string, code = 1): never {
  process.stderr.write(message.endsWith('\n') ? message : `${message}\n`);
  process.exit(code);
}

/** The cluster block of `smtplb status`: every node with its heartbeat, queue and rate, and the limits in force. */
function clusterLines(c: ClusterView): string[] {
  const out = [`  cluster: node ${c.node}, ${c.redis}, ${c.state === 'shared' ? 'limits shared' : `LOCAL SHARE (1/${c.nodes_live}) since ${c.since}: ${c.error ?? ''}`}`];
  for (const n of c.nodes) {
    const beat = n.age_ms < 1000 ? `${n.age_ms} ms ago` : `${(n.age_ms / 1000).toFixed(0)} s ago`;
    out.push(`    node ${n.node.padEnd(16)} ${n.live ? 'live ' : 'GONE '} heartbeat ${beat.padEnd(12)} queue ${String(n.queue).padEnd(7)} ${String(n.delivery_rate).padStart(7)} msg/s${n.shared ? '' : '  local share'}${n.down.length ? `  sees down: ${n.down.slice(0, 5).join(', ')}` : ''}`);
  }
  const lim = (x: { concurrency: number | null; rate_per_minute: number | null }) => [x.concurrency !== null ? `concurrency ${x.concurrency}` : '', x.rate_per_minute !== null ? `${x.rate_per_minute}/min` : ''].filter(Boolean).join(', ') || 'none';
  for (const l of c.limits.slice(0, 20)) out.push(`    limit ${l.destination.padEnd(24)} cluster-wide ${lim(l)}${c.state === 'shared' ? '' : `; this node now ${lim(l.in_force)}`}`);
  return out;
}

function printStatus(s: GatewayStatus): void {
  for (const line of statusLines(s)) console.log(line);
}

/** The status as text lines; `rates` (watch mode) adds connections per second since the previous frame. */
function statusLines(s: GatewayStatus, rates?: { prev: Map<string, { n: number; t: number }>; now: number }): string[] {
  const out: string[] = [];
  out.push(`smtplb on ${s.hostname}`);
  for (const l of s.listeners) out.push(`  listener ${l.name.padEnd(14)} ${l.listen.padEnd(22)} mode ${l.mode}${l.pool ? ` -> ${l.pool}` : ''}`);
  for (const p of s.pools) {
    out.push(`  pool ${p.name} (balance ${p.balance})`);
    for (const v of p.servers) {
      const state = v.admin !== 'ready' ? v.admin.toUpperCase() : !v.up ? 'DOWN' : v.ejected_until ? 'EJECTED' : 'UP';
      const warm = v.warmup ? (v.warmup.cap === null ? '  warm' : `  warm-up ${v.warmup.sent}/${v.warmup.cap} today`) : '';
      let rate = '';
      if (rates) {
        const key = `${p.name}/${v.name}`;
        const before = rates.prev.get(key);
        rates.prev.set(key, { n: v.connections, t: rates.now });
        rate = ` ${before ? (((v.connections - before.n) * 1000) / Math.max(1, rates.now - before.t)).toFixed(1).padStart(7) : '      -'} conn/s`;
      }
      out.push(`    ${v.name.padEnd(16)} ${v.address.padEnd(22)} ${state.padEnd(8)} weight ${String(v.weight).padEnd(4)}${v.backup ? ' backup' : '       '} active ${String(v.active).padEnd(5)} total ${v.connections}${rate}${warm}${v.last_error && !v.up ? `  (${v.last_error})` : ''}`);
    }
  }
  if (s.queue) {
    const counts = Object.entries(s.queue.counts).map(([k, n]) => `${k} ${n}`).join(', ');
    out.push(`  queue: ${counts || 'empty'}`);
    for (const d of s.queue.destinations.slice(0, 10)) out.push(`    ${d.destination.padEnd(30)} pool ${d.pool.padEnd(12)} waiting ${String(d.queued).padEnd(6)} oldest ${d.oldest_seconds}s`);
  }
  // Under workers: a worker that did not answer leaves its shard of the queue out.
  if (s.warning) out.push(`  warning: ${s.warning}`);
  for (const t of s.throttles ?? []) if (t.factor < 1 || t.suspended_until) out.push(`  throttled ${t.pool}/${t.server} → ${t.destination}: factor ${t.factor}${t.rate_per_minute ? `, ${t.rate_per_minute}/min` : ''}${t.suspended_until ? `, suspended until ${t.suspended_until}` : ''}`);
  for (const x of s.suspensions ?? []) out.push(`  suspension ${x.id}: ${x.pool} → ${x.destination} until ${x.until} by ${x.who}: ${x.reason}`);
  for (const o of s.overrides ?? []) out.push(`  override ${o.id}: ${describeOverride(o)}`);
  if (s.cluster) out.push(...clusterLines(s.cluster));
  // Server errors and replies are remote text: no escape sequence of theirs reaches the terminal.
  return out.map(printable);
}

/**
 * `status --watch`: on a terminal the frame is redrawn in place (cursor home, each line cleared
 * to its end, cut to the window so nothing scrolls); piped, frames follow one another. The
 * first frame fails as `status` does; an smtplb that goes away later is shown in the frame
 * and asked again. Ctrl-C ends it with status 0.
 */
async function watchStatus(file: string, everyMs: number, asJson: boolean): Promise<void> {
  const tty = !!process.stdout.isTTY && !asJson;
  const prev = new Map<string, { n: number; t: number }>();
  let first = true;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const done = new Promise<void>((resolve) => {
    const stop = () => {
      stopped = true;
      clearTimeout(timer);
      if (tty) process.stdout.write('\x1b[?25h\n');
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  const frame = async () => {
    const now = Date.now();
    let lines: string[];
    let json: unknown;
    try {
      const s = (await admin(file, 'GET', '/api/status')) as GatewayStatus;
      json = s;
      lines = statusLines(s, { prev, now });
    } catch (e) {
      // The first frame fails as plain `status` does (bad config, nothing running); later ones show it and ask again.
      if (first) throw e;
      json = { error: (e as Error).message };
      lines = [`smtplb: ${(e as Error).message}`];
    }
    if (stopped) return;
    if (asJson) process.stdout.write(`${JSON.stringify({ at: new Date(now).toISOString(), status: json })}\n`);
    else {
      const head = `every ${everyMs / 1000} s, ${new Date(now).toLocaleTimeString()}${tty ? ' (Ctrl-C to stop)' : ''}`;
      if (!tty) process.stdout.write(`${first ? '' : '\n'}${head}\n${lines.join('\n')}\n`);
      else {
        const cols = process.stdout.columns || 120;
        const rows = process.stdout.rows || 40;
        let body = [head, ...lines];
        if (body.length > rows - 1) body = [...body.slice(0, rows - 2), `… ${body.length - rows + 2} more lines (a larger window shows them)`];
        const cut = (l: string) => (l.length > cols ? `${l.slice(0, cols - 1)}…` : l);
        process.stdout.write(`${first ? '\x1b[?25l\x1b[2J' : ''}\x1b[H${body.map((l) => `${cut(l)}\x1b[K`).join('\n')}\n\x1b[J`);
      }
    }
    first = false;
    timer = setTimeout(() => void frame(), everyMs);
  };
  await frame();
  await done;
}


function describeOverride(o: OverrideView): string {
  const limits = [o.rate ? `rate ${o.rate}` : '', o.concurrency ? `concurrency ${o.concurrency}` : ''].filter(Boolean).join(', ');
  return `${o.pool} → ${o.destination}: ${limits} until ${o.until} by ${o.who}: ${o.reason}`;
}


/** Under workers: an answer some worker's shard is missing from says so, on stderr (stdout stays parseable). */
function warnPartial(r: unknown): void {
  const w = (r as { warning?: unknown } | null)?.warning;
  if (typeof w === 'string') process.stderr.write(`${printable(`warning: ${w}`)}\n`);
}

function printQueue(ms: QueueMessage[]): void {
  if (ms.length === 0) return console.log('queue is empty');
  for (const m of ms) {
    console.log(`${m.id}  ${String(m.size).padStart(8)}  ${m.created}  <${m.sender}>  ${m.message_id ?? ''}`);
    for (const r of m.recipients) {
      console.log(`    ${r.address.padEnd(32)} ${r.state.padEnd(9)} pool ${r.pool} attempts ${r.attempts}${r.site ? ` site ${r.site}` : ''}`);
      if (r.state === 'queued') console.log(`      next attempt ${r.next_attempt}, waiting for ${r.waiting_for}`);
      if (r.last_reply) console.log(`      last reply ${r.last_server ? `from ${r.last_server}: ` : ''}${r.last_reply}${r.reply_class ? ` (${r.reply_class})` : ''}`);
    }
  }
}


function printRoute(r: RouteExplain): void {
  if (!r.route) return console.log(`${r.address}: ${r.why.join('; ')}`);
  console.log(`${r.address}: route #${r.route.index} -> pool ${r.route.pool}`);
  for (const w of r.why) console.log(`  because ${w}`);
  for (const p of r.pools ?? []) {
    console.log(`  pool ${p.pool} (balance ${p.balance}): ${p.status === 'ok' ? `would pick among ${p.candidates.join(', ')}` : p.status === 'busy' ? 'every server is at max_connections: mail waits' : 'no server is up'}`);
    if (p.site) console.log(`    MX site ${p.site}: limits counted under ${p.shaping_key}`);
    for (const s of p.servers) console.log(`    ${s.name.padEnd(16)} ${s.admin !== 'ready' ? s.admin.toUpperCase() : !s.up ? 'DOWN' : s.ejected ? 'EJECTED' : 'UP'}${s.backup ? ' backup' : ''} weight ${s.weight}`);
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return;
  }
  if (command === 'sink') return (await import('../sink/cli.js')).runSinkCommand(rest); // its own options: src/sink/cli.ts
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      json: { type: 'boolean' },
      server: { type: 'string', short: 's' },
      from: { type: 'string', short: 'f' },
      to: { type: 'string', short: 't', multiple: true },
      header: { type: 'string', multiple: true },
      subject: { type: 'string' },
      body: { type: 'string' },
      count: { type: 'string', short: 'n' },
      concurrency: { type: 'string' },
      tls: { type: 'boolean' },
      'tls-on-connect': { type: 'boolean' },
      'auth-user': { type: 'string' },
      'auth-password': { type: 'string' },
      helo: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      password: { type: 'string' },
      listen: { type: 'string' },
      listener: { type: 'string' },
      admin: { type: 'string' },
      domain: { type: 'string' },
      pool: { type: 'string' },
      state: { type: 'string' },
      'older-than': { type: 'string' },
      user: { type: 'string' },
      class: { type: 'string' },
      for: { type: 'string' },
      reason: { type: 'string' },
      who: { type: 'string' },
      selector: { type: 'string' },
      rate: { type: 'string' },
      algorithm: { type: 'string' },
      bits: { type: 'string' },
      out: { type: 'string' },
      resolver: { type: 'string' },
      scope: { type: 'string' },
      address: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      watch: { type: 'boolean', short: 'w' },
      interval: { type: 'string' },
    },
  });
  if (!command || values.help || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return;
  }
  switch (command) {
    case 'check': {
      const file = configOf(values);
      const loaded = loadConfig(file);
      const { config } = loaded;
      for (const w of configWarnings(loaded)) console.error(`warning: ${w}`);
      console.log(`${file}: OK (${config.listeners.length} listeners, ${Object.keys(config.pools).length} pools, ${config.routes.length} routes)`);
      return;
    }
    case 'start': {
      const file = configOf(values);
      const loaded = loadConfig(file);
      const { runProcess } = await import('../runtime/process.js');
      await runProcess(loaded, createLogger(loaded.config.log.level, loaded.config.log.format));
      return;
    }
    case 'demo':
      await (await import('../demo/demo.js')).runDemo({ listen: values.listen, admin: values.admin });
      return;
    case 'status': {
      const file = configOf(values);
      if (values.watch || values.interval) {
        let every: number;
        try {
          every = parseDuration(values.interval ?? '2s');
        } catch (e) {
          throw new UsageError(`--interval: ${(e as Error).message}`);
        }
        if (every < 100) throw new UsageError('--interval: at least 100ms');
        return watchStatus(file, every, !!values.json);
      }
      const s = (await admin(file, 'GET', '/api/status')) as GatewayStatus;
      if (values.json) console.log(JSON.stringify(s, null, 2));
      else printStatus(s);
      return;
    }
    case 'server': {
      const [action, pool, server, weight] = positionals;
      if (!['drain', 'enable', 'disable', 'weight'].includes(action) || !pool || !server || (action === 'weight' && weight === undefined)) {
        throw new UsageError('usage: smtplb server drain|enable|disable POOL SERVER -c FILE, or smtplb server weight POOL SERVER N -c FILE');
      }
      const r = await admin(configOf(values), 'POST', `/api/pools/${encodeURIComponent(pool)}/servers/${encodeURIComponent(server)}/${action}`, action === 'weight' ? { weight: Number(weight) } : undefined);
      console.log(values.json ? JSON.stringify(r, null, 2) : `${pool}/${server}: ${action} done`);
      return;
    }
    case 'queue': {
      const [action, id] = positionals;
      const file = configOf(values);
      if (action === 'list') {
        const q = new URLSearchParams();
        for (const k of ['domain', 'pool', 'state'] as const) if (values[k]) q.set(k, values[k]!);
        if (values['older-than']) q.set('older_than', values['older-than']);
        const r = (await admin(file, 'GET', `/api/queue?${q}`)) as { messages: QueueMessage[]; counts: { state: string; n: number }[] };
        warnPartial(r);
        if (values.json) return console.log(JSON.stringify(r, null, 2));
        printQueue(r.messages);
        return;
      }
      if (action === 'flush' && !id) {
        const r = await admin(file, 'POST', `/api/queue/flush${values.domain ? `?domain=${encodeURIComponent(values.domain)}` : ''}`);
        warnPartial(r);
        return console.log(values.json ? JSON.stringify(r, null, 2) : `flushed ${(r as { flushed: number }).flushed} messages`);
      }
      if (!['show', 'hold', 'release', 'delete', 'bounce', 'flush'].includes(action) || !id) throw new UsageError('usage: smtplb queue list|show|hold|release|delete|bounce|flush ID -c FILE');
      if (action === 'show') {
        const m = (await admin(file, 'GET', `/api/queue/${encodeURIComponent(id)}`)) as QueueMessage & { history: { at: string; rcpt: string | null; kind: string; server: string | null; code: number | null; text: string | null }[] };
        if (values.json) return console.log(JSON.stringify(m, null, 2));
        printQueue([m]);
        console.log('  history:');
        for (const h of m.history) console.log(`    ${h.at}  ${h.kind.padEnd(10)} ${h.server ? `via ${h.server} ` : ''}${h.rcpt ? `<${h.rcpt}> ` : ''}${h.code ?? ''} ${h.text ?? ''}`.trimEnd());
        return;
      }
      const r = await admin(file, 'POST', `/api/queue/${encodeURIComponent(id)}/${action}`);
      console.log(values.json ? JSON.stringify(r, null, 2) : `${id}: ${action} done (${(r as { recipients: number }).recipients} recipients)`);
      return;
    }
    case 'route': {
      const [sub, address] = positionals;
      if (sub !== 'explain' || !address) throw new UsageError('usage: smtplb route explain ADDRESS [--from A] [--user U] [--class C] [--listener L] -c FILE');
      const q = new URLSearchParams({ address });
      if (values.from) q.set('from', values.from);
      for (const k of ['user', 'class', 'listener'] as const) if (values[k]) q.set(k, values[k]!);
      const r = (await admin(configOf(values), 'GET', `/api/route?${q}`)) as RouteExplain;
      if (values.json) return console.log(JSON.stringify(r, null, 2));
      printRoute(r);
      return;
    }
    case 'suspend': {
      const [destination] = positionals;
      if (!destination || !values.pool || !values.for) throw new UsageError('usage: smtplb suspend DESTINATION --pool P --for 2h --reason "..." -c FILE');
      const r = (await admin(configOf(values), 'POST', '/api/suspensions', { destination, pool: values.pool, for: values.for, reason: values.reason, who: values.who ?? process.env.USER ?? 'cli' })) as { suspension: SuspensionView };
      if (values.json) return console.log(JSON.stringify(r, null, 2));
      console.log(`suspension ${r.suspension.id}: ${r.suspension.pool} → ${r.suspension.destination} until ${r.suspension.until} (${r.suspension.reason})`);
      return;
    }
    case 'suspensions': {
      const r = (await admin(configOf(values), 'GET', '/api/suspensions')) as { suspensions: SuspensionView[] };
      if (values.json) return console.log(JSON.stringify(r, null, 2));
      if (!r.suspensions.length) return console.log('no suspensions in force');
      for (const s of r.suspensions) console.log(`${s.id}  ${s.pool} → ${s.destination}  until ${s.until}  by ${s.who}: ${s.reason}`);
      return;
    }
    case 'unsuspend': {
      const [id] = positionals;
      if (!id) throw new UsageError('usage: smtplb unsuspend ID -c FILE');
      await admin(configOf(values), 'DELETE', `/api/suspensions/${encodeURIComponent(id)}`);
      console.log(`suspension ${id} cancelled`);
      return;
    }
    case 'override': {
      const [destination] = positionals;
      if (!destination || !values.pool || !values.for || (!values.rate && !values.concurrency)) throw new UsageError('usage: smtplb override DESTINATION --pool P [--rate 100/min] [--concurrency N] --for 2h --reason "..." -c FILE');
      const r = (await admin(configOf(values), 'POST', '/api/overrides', { destination, pool: values.pool, for: values.for, reason: values.reason, who: values.who ?? process.env.USER ?? 'cli', rate: values.rate, concurrency: values.concurrency === undefined ? undefined : Number(values.concurrency) })) as { override: OverrideView };
      if (values.json) return console.log(JSON.stringify(r, null, 2));
      console.log(`override ${r.override.id}: ${describeOverride(r.override)}`);
      return;
    }
    case 'overrides': {
      const r = (await admin(configOf(values), 'GET', '/api/overrides')) as { overrides: OverrideView[] };
      if (values.json) return console.log(JSON.stringify(r, null, 2));
      if (!r.overrides.length) return console.log('no overrides in force');
      for (const o of r.overrides) console.log(`${o.id}  ${describeOverride(o)}`);
      return;
    }
    case 'unoverride': {
      const [id] = positionals;
      if (!id) throw new UsageError('usage: smtplb unoverride ID -c FILE');
      await admin(configOf(values), 'DELETE', `/api/overrides/${encodeURIComponent(id)}`);
      console.log(`override ${id} cancelled`);
      return;
    }
    case 'throttles': {
      const r = (await admin(configOf(values), 'GET', '/api/throttles')) as { throttles: Record<string, unknown>[] };
      if (values.json) return console.log(JSON.stringify(r, null, 2));
      if (!r.throttles.length) return console.log('no destination is throttled');
      for (const t of r.throttles) console.log(`${t.pool}/${t.server} → ${t.destination}: factor ${t.factor}, rate ${t.rate_per_minute ?? '-'}/min of ${t.configured_rate_per_minute ?? '-'}, in flight ${t.inflight}${t.suspended_until ? `, suspended until ${t.suspended_until}` : ''}${t.last_throttle_reply ? ` (${t.last_throttle_reply})` : ''}`);
      return;
    }
    case 'dkim': {
      const [sub] = positionals;
      const alg = values.algorithm ?? 'rsa';
      if (sub !== 'keygen' || !values.domain || !values.selector || !['rsa', 'ed25519'].includes(alg)) throw new UsageError('usage: smtplb dkim keygen --domain D --selector S [--algorithm rsa|ed25519] [--bits 2048] [--out KEYFILE]');
      const bits = Number(values.bits ?? 2048);
      if (alg === 'rsa' && (!Number.isInteger(bits) || bits < 1024 || bits > 8192)) throw new UsageError('--bits must be between 1024 and 8192');
      const { dkimKeygen, zoneLine } = await import('../signing/keygen.js');
      const k = dkimKeygen(values.domain.toLowerCase(), values.selector, alg as 'rsa' | 'ed25519', bits);
      if (values.out) {
        fs.writeFileSync(values.out, k.privateKeyPem, { mode: 0o600, flag: 'wx' });
        console.log(`# private key written to ${values.out}`);
      } else process.stdout.write(k.privateKeyPem);
      console.log(`# publish this TXT record, then add to the config:`);
      console.log(`#   dkim: { domains: { ${values.domain}: { selector: ${values.selector}, key_file: ${values.out ?? 'KEYFILE'}, algorithm: ${alg}-sha256 } } }`);
      console.log(zoneLine(k.name, k.record));
      return;
    }
    case 'doctor': {
      const { doctorCommand } = await import('../identity/doctor.js'); // loads mailauth only when asked
      process.exitCode = await doctorCommand(loadConfig(configOf(values)).config, { domain: values.domain, resolver: values.resolver, json: !!values.json });
      return;
    }
    case 'send': {
      if (!values.server || !values.from || !values.to?.length) throw new UsageError('usage: smtplb send --server HOST:PORT --from ADDRESS --to ADDRESS [...]');
      const count = Number(values.count ?? 1);
      const concurrency = Number(values.concurrency ?? 1);
      if (!Number.isInteger(count) || count < 1) throw new UsageError('--count must be a whole number ≥ 1');
      if (!Number.isInteger(concurrency) || concurrency < 1) throw new UsageError('--concurrency must be a whole number ≥ 1');
      const { defaultHelo, runSend } = await import('./send.js');
      process.exitCode = await runSend({
        server: values.server,
        from: values.from,
        to: values.to,
        headers: values.header ?? [],
        subject: values.subject ?? 'smtplb test message',
        body: values.body ?? 'This is a test message sent by smtplb send.',
        count,
        concurrency,
        starttls: !!values.tls,
        tlsOnConnect: !!values['tls-on-connect'],
        authUser: values['auth-user'],
        authPassword: values['auth-password'],
        helo: values.helo ?? defaultHelo,
        quiet: !!values.quiet,
      });
      return;
    }
    case 'suppression': {
      const [action, arg] = positionals;
      return runSuppression(configOf(values), action, arg, { scope: values.scope, reason: values.reason, class: values.class, address: values.address, for: values.for, json: values.json });
    }
    case 'passwd': {
      let pw = values.password;
      if (pw === undefined) pw = fs.readFileSync(0, 'utf8').replace(/\r?\n$/, '');
      if (!pw) throw new UsageError('an empty password is not allowed');
      console.log(await (await import('../policy/password.js')).hashPassword(pw));
      return;
    }
    default:
      throw new UsageError(`unknown command "${command}"\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof ConfigError) fail(`invalid configuration:\n  ${e.problems.join('\n  ')}`);
  if (e instanceof UsageError || e instanceof StartError) fail(e.message);
  if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) fail(`${(e as Error).message}\n\n${USAGE}`, 2);
  fail(`smtplb: ${(e as Error).message ?? String(e)}`);
});
