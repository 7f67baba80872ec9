// The `smtplb` command line. Every failure ends in a one-paragraph message and a non-zero
// exit status, never a stack trace.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/load.js';
import { formatAddress } from '../config/units.js';
import { createLogger } from '../core/logger.js';
import { hashPassword } from '../policy/password.js';
import { StartError } from '../runtime/gateway.js';
import { runProcess } from '../runtime/process.js';
import { defaultHelo, runSend } from './send.js';
import { runDemo } from '../demo/demo.js';

const USAGE = `usage: smtplb <command> [options]

  start  -c FILE            run in the foreground
  check  -c FILE            validate a config (exit 0 valid, 1 with errors)
  demo                      two demo MTAs on loopback with smtplb in front of them
  status -c FILE [--json]   pools, servers and health from a running smtplb
  server drain|enable|disable POOL SERVER -c FILE    change a server at run time
  server weight POOL SERVER N -c FILE
  send --server HOST:PORT --from A --to B [--count N] [--concurrency C] [--tls]
       [--tls-on-connect] [--auth-user U --auth-password P] [--header "K: V"]
  passwd [--password P]     print a password hash for users (reads stdin without --password)
`;

class UsageError extends Error {}

function fail(message: string, code = 1): never {
  process.stderr.write(message.endsWith('\n') ? message : `${message}\n`);
  process.exit(code);
}

function configOf(values: { config?: string }): string {
  if (!values.config) throw new UsageError('this command needs -c FILE');
  return values.config;
}

async function admin(file: string, method: string, urlPath: string, body?: unknown): Promise<unknown> {
  const { config } = loadConfig(file);
  if (!config.admin) throw new UsageError(`${file} has no admin: { listen, token } section`);
  const url = `http://${formatAddress(config.admin.listen).replace('0.0.0.0', '127.0.0.1')}${urlPath}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${config.admin.token ?? ''}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new UsageError(`cannot reach the smtplb admin API at ${url}: ${((e as Error).cause as Error | undefined)?.message ?? (e as Error).message}. Is smtplb running with ${file}?`);
  }
  const data = (await res.json().catch(() => ({}))) as { error?: string };
  if (!res.ok) throw new UsageError(`admin API: ${res.status} ${data.error ?? res.statusText}`);
  return data;
}

interface StatusServer { name: string; address: string; weight: number; backup: boolean; admin: string; up: boolean; ejected_until: string | null; active: number; connections: number; failures: number; last_error: string | null }
interface StatusShape { hostname: string; listeners: { name: string; listen: string; mode: string; pool?: string }[]; pools: { name: string; balance: string; servers: StatusServer[] }[] }

function printStatus(s: StatusShape): void {
  console.log(`smtplb on ${s.hostname}`);
  for (const l of s.listeners) console.log(`  listener ${l.name.padEnd(14)} ${l.listen.padEnd(22)} mode ${l.mode}${l.pool ? ` -> ${l.pool}` : ''}`);
  for (const p of s.pools) {
    console.log(`  pool ${p.name} (balance ${p.balance})`);
    for (const v of p.servers) {
      const state = v.admin !== 'ready' ? v.admin.toUpperCase() : !v.up ? 'DOWN' : v.ejected_until ? 'EJECTED' : 'UP';
      console.log(`    ${v.name.padEnd(16)} ${v.address.padEnd(22)} ${state.padEnd(8)} weight ${String(v.weight).padEnd(4)}${v.backup ? ' backup' : '       '} active ${String(v.active).padEnd(5)} total ${v.connections}${v.last_error && !v.up ? `  (${v.last_error})` : ''}`);
    }
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return;
  }
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
      admin: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (!command || values.help || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return;
  }
  switch (command) {
    case 'check': {
      const file = configOf(values);
      const { config } = loadConfig(file);
      console.log(`${file}: OK (${config.listeners.length} listeners, ${Object.keys(config.pools).length} pools, ${config.routes.length} routes)`);
      return;
    }
    case 'start': {
      const file = configOf(values);
      const loaded = loadConfig(file);
      await runProcess(loaded, createLogger(loaded.config.log.level, loaded.config.log.format));
      return;
    }
    case 'demo':
      await runDemo({ listen: values.listen, admin: values.admin });
      return;
    case 'status': {
      const s = (await admin(configOf(values), 'GET', '/api/status')) as StatusShape;
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
    case 'send': {
      if (!values.server || !values.from || !values.to?.length) throw new UsageError('usage: smtplb send --server HOST:PORT --from ADDRESS --to ADDRESS [...]');
      const count = Number(values.count ?? 1);
      const concurrency = Number(values.concurrency ?? 1);
      if (!Number.isInteger(count) || count < 1) throw new UsageError('--count must be a whole number ≥ 1');
      if (!Number.isInteger(concurrency) || concurrency < 1) throw new UsageError('--concurrency must be a whole number ≥ 1');
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
    case 'passwd': {
      let pw = values.password;
      if (pw === undefined) pw = fs.readFileSync(0, 'utf8').replace(/\r?\n$/, '');
      if (!pw) throw new UsageError('an empty password is not allowed');
      console.log(await hashPassword(pw));
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
