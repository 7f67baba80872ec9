// The relay's moving parts for one process: spool, queue manager, delivery agent, routing.
// Listeners hand accepted messages to `accept`; the queue manager takes it from there.
import path from 'node:path';
import type { Logger } from 'pino';
import type { Pool, PoolSet } from '../balancing/pool.js';
import type { Config } from '../config/schema.js';
import type { Metrics } from '../admin/metrics.js';
import type { DeliveryGate } from '../delivery/deliver.js';
import { DeliveryAgent } from '../delivery/agent.js';
import { DeliveryLog, enhancedCode } from '../delivery/delivery-log.js';
import { Shaper, type Plan } from '../scheduler/shaper.js';
import { SiteKeys } from '../scheduler/site-keys.js';
import { PROVIDER_SITES } from '../routing/providers.js';
import type { UnsubscribeSettings } from '../unsubscribe/headers.js';
import { readToken, type UnsubscribeClaim } from '../unsubscribe/token.js';
import { createEndpoint } from '../unsubscribe/endpoint.js';
import { ComplaintDesk } from '../feedback/complaints.js';
import { ComplianceGate } from '../compliance/compliance.js';
import { storedTags } from '../events/event.js';
import type { SmtpListenerContext } from '../listeners/smtp-listener.js';
import type http from 'node:http';
import { DkimSigner, loadKeys, type DkimKey } from '../signing/dkim.js';
import type { InboundInSpool, InboundMessage, Reply } from '../message/inbound.js';
import { CutThrough } from './cut-through.js';
import type { RelayStatus } from '../admin/api-types.js';
import { chooseRoute, domainOf, type RouteQuery } from '../routing/route.js';
import type { MessageRow, RecipientRow } from '../spool/spool.js';
import { Scheduler } from '../scheduler/scheduler.js';
import { Spool, SpoolFullError, SpoolUnavailableError, type Incoming } from '../spool/spool.js';
import { Cluster } from '../cluster/cluster.js';
import { stateOf, type ServerState } from '../control/servers.js';
import { shareOfRule } from '../cluster/share.js';
import { perMinute, type Rate } from '../config/units.js';
import type { IpcStoreClient } from '../cluster/ipc-client.js';
import { shardDir } from '../spool/shards.js';
import { workerCount } from './worker-count.js';
import { OutcomeObserver } from './outcome-observer.js';
import { EventFeed } from './event-feed.js';
import type { SuppressionList } from '../suppression/list.js';
import { openNodeList } from '../suppression/sync.js';
import { lookupScopes, normalAddress, refusal } from '../suppression/rules.js';
import type { SuppressionVerdict } from '../listeners/smtp-listener.js';
import type { ClusterConfig } from '../config/schema.js';

/**
 * The workers of one node, as a cluster whose store is their primary: a lease outlives a
 * stalled worker by 15 s at most (the primary gives back a dead worker's leases at once), and a
 * primary that does not answer within 500 ms puts the worker on its share.
 */
function workersCluster(shard: number): ClusterConfig {
  return { redis: 'primary process (IPC)', node: `worker-${shard}`, lease_ttl: 15_000, timeout: 500, sync: 250, prefix: 'smtplb' };
}

/** A message as the relay takes it: envelope, its file in the spool, the header lines added on top. */
type Received = InboundInSpool;

export class Relay {
  readonly spool: Spool;
  readonly scheduler: Scheduler;
  readonly shaper: Shaper;
  /** Which key a destination's limits count under: its domain or its MX site. */
  readonly sites: SiteKeys;
  /** Complaint reports, rates and pauses (src/feedback). */
  readonly complaints: ComplaintDesk;
  /** Bulk mail checked against the sender's DNS records at send time (src/compliance). */
  readonly compliance: ComplianceGate;
  /** The public one-click unsubscribe endpoint (shard 0 serves it for the node). */
  private endpoint?: http.Server;
  private shard: number;
  readonly deliveryLog: DeliveryLog;
  private signer?: DkimSigner;
  /** The last failed delivery attempts, for status and the dashboard. */
  /** The delivery agent (delivery/agent.ts): the queue manager's and cut-through's. */
  readonly agent: DeliveryAgent;
  private cutThrough: CutThrough;
  /** This node's link to the other nodes (`cluster:`), if it has one. */
  readonly cluster?: Cluster;
  /** Drains and weights decided on another node, for the gateway to apply here. */
  onClusterServers?: (states: ServerState[]) => void;
  /** Servers another node found down (`pool/server`): the gateway checks them here at once. */
  onPeerDown?: (servers: string[]) => void;
  private delivered = { n: 0, samples: [] as [number, number][] };
  /** The node's suppression list (one file for all its processes, src/suppression/list.ts). */
  readonly suppressions: SuppressionList;
  private suppressionList: ReturnType<typeof openNodeList>;
  /** Reply classes and the suppression list fed from outcomes. */
  readonly outcomes: OutcomeObserver;
  /** Events to the application: outbox rows with the outcomes, and their dispatcher. */
  readonly events: EventFeed;

  /**
   * `worker`: this relay is one of a node's worker processes (`workers: N`): it spools into its
   * own shard and shares limits with the other workers through the primary's store (or, with
   * `cluster:`, through Redis as a node of its own).
   */
  constructor(private config: () => Config, private pools: () => Map<string, Pool>, private poolSet: PoolSet, private log: Logger, private metrics: Metrics, worker?: { shard: number; store?: IpcStoreClient }) {
    const c = config();
    this.shard = worker?.shard ?? 0;
    const dir = shardDir(c.spool, this.shard);
    const workers = workerCount(c.workers);
    this.spool = new Spool(dir, () => this.config().queue.min_free);
    this.spool.on('reserve-released', () => this.log.warn({ spool: dir }, 'spool disk full: released the reserve to record delivery outcomes; new mail gets 452 until there is room'));
    this.spool.on('unwritable', (e: NodeJS.ErrnoException) =>
      this.log.error({ spool: dir, code: e.code, err: e.message }, 'spool cannot write (read-only or failing filesystem): new mail gets 451 4.3.0, deliveries pause; probing every second'),
    );
    this.spool.on('writable', () => this.log.warn({ spool: dir }, 'spool writes again: taking mail and delivering'));
    // A sync that failed after a commit: what the disk holds is unknown, so the last resort
    // ends the process (exit 70) before any reply is given.
    this.spool.on('fatal', (e: Error) => process.nextTick(() => { throw e; }));
    this.spool.on('dsn-deferred', (id: string, e: Error) => this.log.warn({ queue_id: id, err: e.message }, 'bounce could not be written (disk full); DSN owed and retried'));
    // The workers of one node share through their primary unless the node is in a Redis cluster.
    const shared = c.cluster ? (worker ? { ...c.cluster, node: `${c.cluster.node}.${worker.shard}` } : c.cluster) : worker?.store ? workersCluster(worker.shard) : undefined;
    if (shared) {
      const cluster = new Cluster(shared, { beat: () => this.beat(), lists: () => ({ ...this.shaper.ownLists(), servers: c.cluster ? this.serverStates() : [] }) }, log, path.join(dir, 'cluster-nodes'), c.cluster ? undefined : worker?.store);
      cluster.on('control', (lists: import('../cluster/cluster.js').ControlLists, lifted: boolean) => {
        this.shaper.useControl(lists);
        // Under workers alone the primary pushes drains and weights itself; the store's list is Redis's only.
        if (cluster.acrossNodes) this.onClusterServers?.(lists.servers);
        if (lifted) this.scheduler.unblockAll();
      });
      cluster.on('local', () => this.shaper.wentLocal());
      cluster.on('peer-down', (servers: string[]) => this.onPeerDown?.(servers));
      cluster.on('shared', () => {
        // Deliveries started on the local share count in the store from now on, and idle
        // connections that hold no lease close: only leased connections may stay open.
        cluster.adopt(this.shaper.adoptLocal());
        this.agent.cache.dropUnparked();
        void this.shaper.wentShared().catch((e: Error) => this.log.warn({ err: e.message }, 'cluster: warm-up counts not merged'));
      });
      cluster.on('reseeded', () => void this.shaper.reseeded().catch((e: Error) => this.log.warn({ err: e.message }, 'cluster: warm-up counts not restored')));
      this.cluster = cluster;
    }
    this.shaper = new Shaper(() => this.config(), this.spool, this.cluster);
    this.agent = new DeliveryAgent({ pools, poolSet, hostname: () => this.config().hostname, metrics, downElsewhere: () => this.cluster?.downElsewhere, signatureFor: (m, d) => this.signatureFor(m, d) });
    this.sites = new SiteKeys({ sites: () => ({ ...PROVIDER_SITES, ...this.config().sites }), shaping: () => this.config().shaping, lookup: (pool, domain) => this.agent.mx(pool, domain) });
    this.deliveryLog = new DeliveryLog(c.delivery_log.file, log);
    // On a cluster every node's list follows the others (one reader per node: shard 0).
    this.suppressionList = openNodeList(c.spool, c.cluster, log, (worker?.shard ?? 0) === 0);
    this.suppressions = this.suppressionList.list;
    this.outcomes = new OutcomeObserver({
      policy: () => this.config().suppression,
      rules: () => this.config().classify,
      list: () => this.suppressions,
      metrics,
      log,
    });
    this.reloadKeys();
    this.compliance = new ComplianceGate(() => this.config(), log);
    this.complaints = new ComplaintDesk({
      settings: () => {
        const c = this.config();
        return c.feedback ? { ...c.feedback, min_delivered: 1000, pause_for: 86_400_000, ...c.complaints } : undefined;
      },
      dir: c.spool,
      scope: () => this.config().suppression.scope,
      suppress: (entries) => this.suppressions.add(entries),
      event: (e) => this.events.listEvent('complained', e),
      unsubscribe: () => this.config().unsubscribe,
      pauses: () => this.shaper.suspensions().filter((s) => /^(class|tag):/.test(s.destination)),
      pause: (p) => this.shaper.suspend(p),
      counted: (type, matched) => metrics.complaints.labels(type.slice(0, 20), String(matched)).inc(),
      log,
    });
    this.scheduler = new Scheduler({
      spool: this.spool,
      pools,
      policy: () => this.config().queue,
      // The processes running now (counted once: a reload that changes `workers` takes effect at restart).
      share: worker ? (limit) => Math.ceil(limit / workers) : undefined,
      hostname: () => this.config().hostname,
      deliver: (req) => this.agent.deliver(req),
      routeBounce: (address) => this.routeOne(address, { listener: 'dsn' }),
      route: (m, domain) => this.routeQueued(m, domain),
      holdFor: (m, pool) => this.compliance.holdFor(m, pool),
      log,
      shape: { plan: (pool, domain, now, starting) => this.plan(pool, domain, now, starting), gate: (domain, pool) => this.gate(domain, pool), keyOf: (pool, domain) => this.sites.knownKey(pool, domain) },
      onAttempt: (m, rows, a) =>
        this.deliveryLog.write({
          event: 'attempt',
          queue_id: m.id,
          message_id: m.message_id,
          sender: m.sender,
          recipient_domain: rows[0].domain,
          recipients: a.rcpts.length,
          route: rows[0].route,
          pool: rows[0].pool,
          server: a.server,
          code: a.code,
          enhanced_code: enhancedCode(a.text),
          reply: a.text,
          queue_delay_ms: a.at - m.created,
          delivery_ms: a.ms,
          attempt: rows[0].attempts + 1,
          ...(a.code === null || a.code >= 400 ? { class: this.outcomes.classOf(a.code, a.text) } : {}),
        }),
      onOutcome: (m, o) => this.outcomes.observe(m, o),
      eventsFor: (m, notes) => this.events.forOutcomes(m, notes),
      classOf: (code, text, expired) => this.outcomes.classOf(code, text, expired),
      onFinal: (m, row, kind) => {
        this.metrics.finalOutcomes.labels(row.pool, kind).inc();
        if (kind === 'delivered' && this.config().feedback) this.complaints.delivered({ ...m, tags: storedTags(m.tags) }, row.rcpt);
        if (kind === 'delivered' && this.config().compliance) this.compliance.delivered(m, this.siteOf(row.pool, row.domain));
        this.deliveryLog.write({
          event: kind,
          queue_id: m.id,
          message_id: m.message_id,
          sender: m.sender,
          recipient: row.rcpt,
          recipient_domain: row.domain,
          route: row.route,
          pool: row.pool,
          server: row.last_server,
          code: row.last_code,
          enhanced_code: enhancedCode(row.last_reply ?? ''),
          reply: row.last_reply ?? '',
          queue_delay_ms: Date.now() - m.created,
          delivery_ms: null,
          attempt: row.attempts,
          ...(kind === 'delivered' ? {} : { class: this.outcomes.classOf(row.last_code, row.last_reply ?? '', kind === 'expired') }),
        });
      },
    });
    this.events = new EventFeed({ config: () => this.config(), spool: this.spool, log, metrics, classOf: (code, text, expired) => this.outcomes.classOf(code, text, expired) });
    this.cutThrough = new CutThrough({
      spoolFirst: () => this.events.on,
      spool: this.spool,
      log,
      deliveryLog: this.deliveryLog,
      pools,
      plan: (p, domain) => this.plan(p, domain),
      gate: (domain, pool) => this.gate(domain, pool),
      deliver: (req) => this.agent.deliver(req),
      settle: (m, rows, r) => this.scheduler.settleJob(m, rows, r),
      enqueue: (m, rs, note) => this.enqueue(m, rs, note),
      envelope: (m, rs) => this.envelope(m, rs),
      spoolRefused: (m, e) => this.spoolRefused(m, e),
    });
  }

  /** The queue manager's question for one destination: its limits are its MX site's when a shaping entry names the site (scheduler/site-keys.ts). */
  private plan(pool: Pool, domain: string, now = Date.now(), starting = 0): Plan {
    const key = this.sites.keyFor(pool, domain, now);
    if (key === null) return { ok: false, reason: `site: looking up the MX hosts of ${domain}`, at: now + 100, spacing: 0 };
    return this.shaper.plan(pool, domain, now, starting, key);
  }

  /** Shaping for one destination, as the delivery agent sees it. */
  private gate(domain: string, poolName: string): DeliveryGate {
    const p = this.pools().get(poolName);
    const key = p ? this.sites.knownKey(p, domain) : domain;
    // On a cluster, connections to a concurrency-limited destination are its own (one group per
    // destination), and an idle one keeps its lease until it closes: the receiver never sees
    // more connections than the cluster-wide limit, and a node still reuses its connections.
    // The domains of one site share its connections (as Postfix's cache shares a server's).
    const mpc = this.shaper.messagesPerConnection(key);
    const own = this.cluster && this.shaper.concurrencyLimited(key);
    return {
      admit: (pool, server, fresh, parked) => this.shaper.reserve(pool, server, key, fresh, parked?.lease),
      end: (pool, server, code, text, delivered, keep, ticket) => {
        if (delivered) this.delivered.n++;
        const lease = this.shaper.end(pool.name, server, key, code, text, delivered, keep, ticket);
        return lease ? { lease, release: () => this.shaper.releaseParked(pool.name, server, key, lease) } : undefined;
      },
      connection: mpc || own || key !== domain ? { group: key, maxMessages: mpc ?? Number.MAX_SAFE_INTEGER } : undefined,
    };
  }

  /** The shaping limits every node shares, and what this node applies now (its share while Redis is away). */
  private clusterLimits() {
    const perMin = (r: Rate | undefined) => (r ? perMinute(r) : null);
    const nodes = this.cluster && !this.cluster.shared ? this.cluster.nodes : 1;
    return Object.entries(this.config().shaping)
      .filter(([, r]) => r.concurrency !== undefined || r.rate !== undefined)
      .map(([destination, r]) => {
        const share = shareOfRule(r, nodes);
        return { destination, concurrency: r.concurrency ?? null, rate_per_minute: perMin(r.rate), in_force: { concurrency: share.concurrency ?? null, rate_per_minute: perMin(share.rate) } };
      });
  }

  /** What this node tells the others each sync: queue, delivery rate, servers it finds down. */
  private beat() {
    const now = Date.now();
    const d = this.delivered;
    d.samples.push([now, d.n]);
    while (d.samples.length > 2 && now - d.samples[0][0] > 10_000) d.samples.shift();
    const [t0, n0] = d.samples[0];
    const down: string[] = [];
    for (const p of this.pools().values()) for (const s of p.servers) if (!s.health.up) down.push(`${p.name}/${s.name}`);
    return { queue: this.spool.counts().reduce((a, c) => a + (c.state === 'queued' ? c.n : 0), 0), rate: now > t0 ? +(((d.n - n0) * 1000) / (now - t0)).toFixed(2) : 0, down: down.slice(0, 100) };
  }

  /** Servers an operator drained or re-weighted on this node: what it seeds an empty cluster store with. */
  private serverStates(): ServerState[] {
    const out: ServerState[] = [];
    for (const p of this.pools().values()) {
      for (const s of p.servers) if (s.admin !== 'ready' || s.weight !== s.configuredWeight) out.push(stateOf(p.name, s.name, s, this.cluster?.node ?? '', Date.now()));
    }
    return out;
  }

  async start(): Promise<void> {
    // The first sync before the first delivery: limits are shared from the start (bounded by the timeout).
    if (this.cluster) await this.cluster.start();
    this.scheduler.start();
    this.events.start();
    await this.startEndpoint();
    const started = Date.now();
    // After a clean shutdown there is nothing to sweep (and at a million files it is not free).
    if (this.spool.cleanStart) return;
    void this.spool.sweepOrphans(started).then(
      (n) => n && this.log.warn({ files: n }, `spool: removed ${n} message file(s) never committed (written before a crash, never acknowledged)`),
      (e: Error) => this.log.error({ err: e }, 'spool: sweeping uncommitted files failed'),
    );
  }

  private async startEndpoint(): Promise<void> {
    const u = this.config().unsubscribe;
    if (!u?.listen || this.shard !== 0) return;
    const server = createEndpoint({
      secret: () => this.config().unsubscribe?.secret ?? u.secret,
      maxAgeMs: () => this.config().unsubscribe?.max_age ?? u.max_age,
      unsubscribe: (claim) => this.unsubscribe(claim, 'one-click'),
      log: this.log,
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: Error) => reject(new Error(`unsubscribe.listen: cannot listen on ${u.listen!.host}:${u.listen!.port}: ${e.message}`)));
      server.listen(u.listen!.port, u.listen!.host, () => resolve());
    });
    server.on('error', (e: Error) => this.log.error({ err: e.message }, 'unsubscribe endpoint failed'));
    this.endpoint = server;
  }

  /** What the SMTP listeners ask of the relay at intake beyond the queue: unsubscribe rules, pauses, smtplb's own addresses. */
  intakeHooks(): Pick<SmtpListenerContext, 'unsubscribe' | 'paused' | 'local'> {
    const isMailto = (a: string) => !!this.config().unsubscribe?.mailto && normalAddress(a) === normalAddress(this.config().unsubscribe!.mailto!);
    return {
      unsubscribe: (): UnsubscribeSettings | undefined => this.config().unsubscribe,
      paused: (cls, tags) => this.complaints.paused(cls, tags),
      local: {
        isAddress: (a) => this.complaints.isAddress(a) || isMailto(a),
        take: (rcpt, raw, client) => (isMailto(rcpt) ? this.unsubscribeByMail(raw) : this.complaints.take(raw, client)),
      },
    };
  }

  /** A message to the unsubscribe mailto: its Subject carries the token (`unsubscribe TOKEN`), as the URL does. */
  private async unsubscribeByMail(raw: Buffer): Promise<Reply> {
    const u = this.config().unsubscribe;
    const subject = /^subject:[ \t]*(.*(?:\r?\n[ \t].*)*)/im.exec(raw.subarray(0, 64 * 1024).toString('latin1').split(/\r?\n\r?\n/)[0])?.[1] ?? '';
    const token = /([A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})/.exec(subject.slice(0, 1000))?.[1];
    const read = u && token ? readToken(u.secret, token, Date.now(), u.max_age) : undefined;
    if (!read?.ok) return { code: 550, text: `5.7.1 Not a valid unsubscribe request${read ? ` (${read.reason})` : ': the Subject carries no token'}` };
    try {
      await this.unsubscribe(read.claim, 'mailto');
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'unsubscribe by mail: could not be recorded');
      return { code: 451, text: '4.3.0 The unsubscribe could not be recorded now; please try again later' };
    }
    return { code: 250, text: `2.0.0 ${read.claim.recipient} unsubscribed from ${read.claim.senderDomain}` };
  }

  /**
   * A recipient unsubscribed (a valid one-click token): suppressed for the sender domain the
   * token names (for every sender under `suppression.scope: global`), synced before this
   * resolves, and an `unsubscribed` event with the message's tags.
   */
  async unsubscribe(c: UnsubscribeClaim, via: string): Promise<void> {
    const scope = this.config().suppression.scope === 'global' || !c.senderDomain ? 'global' : c.senderDomain.toLowerCase();
    const address = normalAddress(c.recipient);
    this.suppressions.add([{ scope, address, reason: `unsubscribed (${via})`, class: null, source: 'unsubscribe', created: Date.now(), expires: null }]);
    this.log.info({ recipient: address, scope, via }, `${address} unsubscribed from ${scope}`);
    await this.events.listEvent('unsubscribed', { recipient: address, sender: '', senderDomain: c.senderDomain, tags: c.tags, queueId: null, messageId: null, via, key: `${scope}:${c.issued}` });
  }

  /** DKIM keys as the config has them now: read here at start, given already read (and checked) by a reload. */
  reloadKeys(loaded?: Map<string, DkimKey>): void {
    const dkim = this.config().dkim;
    if (!dkim || Object.keys(dkim.domains).length === 0) {
      // Signing removed by a reload: the old keys must stop signing too.
      this.signer?.setKeys(new Map());
      return;
    }
    const keys = loaded ?? loadKeys(dkim);
    if (this.signer) this.signer.setKeys(keys, dkim.headers, dkim.threads);
    else this.signer = new DkimSigner(keys, dkim.headers, dkim.threads);
  }

  /** DKIM worker threads in use (0 without signing). */
  get signingThreads(): number {
    return this.signer?.threads ?? 0;
  }

  /** The DKIM-Signature header for a spool file, or '' without a key for these domains. */
  signatureFor(message: Buffer | string, domains: (string | undefined)[], prefix?: Buffer): Promise<string> {
    if (!this.signer) return Promise.resolve('');
    return prefix ? this.signer.signatureWith(prefix, message, ...domains) : this.signer.signatureFor(message, ...domains);
  }

  sign(message: Buffer, domains: (string | undefined)[]): Promise<Buffer> {
    return this.signer ? this.signer.sign(message, ...domains) : Promise.resolve(message);
  }

  route(q: RouteQuery) {
    return chooseRoute(this.config().routes, q);
  }

  /** The route of a queued message's recipients under the routes in force now (as at acceptance: same keys). */
  routeQueued(m: MessageRow, domain: string): { pool: string; route: number } | null {
    const q: RouteQuery = m.listener === 'dsn' ? { domain, listener: 'dsn' } : { domain, class: m.class ?? undefined, senderDomain: domainOf(m.sender) || undefined, user: m.user ?? undefined, listener: m.listener };
    const choice = this.route(q);
    return choice ? { pool: choice.rule.pool, route: choice.index } : null;
  }

  private routeOne(address: string, q: Partial<RouteQuery>) {
    const domain = domainOf(address);
    const choice = this.route({ domain, ...q });
    return choice ? { address, domain, pool: choice.rule.pool, route: choice.index } : null;
  }

  /** A file in the spool for a message that is arriving (listeners write it as DATA comes in). */
  receive(expectedSize = 0): Promise<Incoming> {
    return this.spool.incoming(expectedSize);
  }

  async accept(m: InboundMessage, mode: 'queue' | 'cutthrough', fallback: 'queue' | 'reject'): Promise<Reply> {
    let msg: Received;
    try {
      msg = await this.received(m);
    } catch (e) {
      const r = this.spoolRefused(m, e);
      if (r) return r;
      throw e;
    }
    // Bulk mail the compliance gate would hold is queued, where it waits for its records.
    const held = mode === 'cutthrough' && msg.recipients.some((r) => this.compliance.holdFor({ id: '', sender: msg.sender, class: msg.class ?? null }, r.pool));
    if (mode === 'cutthrough' && !held) return this.cutThrough.relay(msg, fallback);
    return this.enqueue(msg, msg.recipients);
  }

  /** Whole messages (tests, tools) are written to an incoming file like streamed ones. */
  private async received(m: InboundMessage): Promise<Received> {
    if ('incoming' in m) return m;
    const incoming = await this.spool.incoming(m.body.length);
    try {
      await incoming.write(m.body);
    } catch (e) {
      await incoming.discard();
      throw e;
    }
    const { body: _body, ...env } = m;
    return { ...env, incoming, prefix: null };
  }

  /** The reply for mail the spool cannot take (full, or unable to write at all); null for other errors. */
  spoolRefused(m: { listener: string }, e: unknown): Reply | null {
    if (e instanceof SpoolFullError) {
      this.log.error({ listener: m.listener, error: e.message }, 'spool full: refusing mail with 452 4.3.1');
      return { code: 452, text: '4.3.1 Insufficient system storage, try again later' };
    }
    if (e instanceof SpoolUnavailableError) {
      this.log.error({ listener: m.listener, error: e.message }, 'spool cannot write: refusing mail with 451 4.3.0');
      return { code: 451, text: '4.3.0 Queue file write error, try again later' };
    }
    return null;
  }

  /** Refused at MAIL FROM, before the client sends a body the spool could not keep. */
  spoolRefusal(listener: string): Reply | null {
    const u = this.spool.unwritable;
    if (u) return this.spoolRefused({ listener }, new SpoolUnavailableError(u.error));
    if (!this.spool.reserveHeld) return this.spoolRefused({ listener }, new SpoolFullError('spool disk full (its reserve is in use)'));
    return null;
  }

  envelope(m: Received, recipients: Received['recipients']) {
    return { sender: m.sender, recipients, listener: m.listener, user: m.user, class: m.class, client: m.client, messageId: m.messageId, params: m.params, tags: m.tags };
  }

  async enqueue(m: Received, recipients: Received['recipients'], note = ''): Promise<Reply> {
    try {
      const env = this.envelope(m, recipients);
      const outbox = this.events.forIncoming(m.incoming.id, env)?.map((e) => e.body);
      const id = await this.spool.commitIncoming(m.incoming, env, m.prefix, outbox ? { outbox } : {});
      return { code: 250, text: `2.0.0 Ok: queued as ${id}${note}` };
    } catch (e) {
      const r = this.spoolRefused(m, e);
      if (r) return r;
      throw e;
    }
  }

  /** Why a queued recipient waits now: the queue manager's view of its destination, else the row's own reason. */
  /** The MX site a recipient's limits count under, when its pool counts per site and the site is known. */
  siteOf(poolName: string, domain: string): string | null {
    const p = this.pools().get(poolName);
    return (p && this.sites.siteFor(p, domain)) ?? null;
  }

  waitingFor(r: RecipientRow, now = Date.now()): string | null {
    if (r.state !== 'queued') return null;
    // Its own time has not come: the retry schedule (or an earlier throttle) says why.
    if (r.next_at > now && r.wait) return r.wait;
    const w = this.scheduler.waiting(r.pool, r.domain, now);
    if (w) return w.reason;
    return r.wait ?? (r.attempts === 0 ? 'first attempt' : 'retry schedule');
  }

  /** Can the spool take mail now, and if not why (status, metrics). */
  spoolState(): { writable: boolean; full: boolean; error: string | null; since: string | null } {
    const u = this.spool.unwritable;
    return { writable: !u, full: !this.spool.reserveHeld, error: u?.error ?? null, since: u ? new Date(u.since).toISOString() : null };
  }

  /** The relay's part of `smtplb status`: queue by destination, throttles, suspensions, errors. */
  status(now = Date.now()): RelayStatus {
    return {
      queue: {
        counts: Object.fromEntries(this.spool.counts().map((c) => [c.state, c.n])),
        // The 1,000 largest (one index seek each for the oldest), each with why it waits now.
        destinations: this.spool.view.destinations(1000).map((d) => ({ pool: d.pool, destination: d.domain, queued: d.queued, oldest_seconds: Math.round((now - d.oldest) / 1000), waiting_for: this.scheduler.waiting(d.pool, d.domain, now)?.reason ?? null, classes: this.outcomes.classesFor(d.pool, d.domain) })),
        destination_count: this.spool.index.destinationCount,
      },
      spool: this.spoolState(),
      throttles: this.shaper.throttles(now),
      suspensions: this.shaper.suspensions(now).map((s) => ({ ...s, until: new Date(s.until).toISOString(), created: new Date(s.created).toISOString() })),
      overrides: this.shaper.overrides(now).map((o) => ({ ...o, until: new Date(o.until).toISOString(), created: new Date(o.created).toISOString() })),
      last_errors: this.agent.lastErrors.slice(-20).reverse(),
      ...(this.config().feedback ? { complaints: this.complaints.rates() } : {}),
      ...(this.config().compliance ? { compliance: this.compliance.status(now) } : {}),
      ...(this.cluster ? { cluster: { ...this.cluster.status(now), limits: this.clusterLimits() } } : {}),
    };
  }

  /** What the suppression list says of a recipient for this sender (nothing when it is off, or on a read error: mail is not held for the list). */
  suppressionVerdict(recipient: string, sender: string, listener: string): SuppressionVerdict | undefined {
    const policy = this.config().suppression;
    if (!policy.enabled) return undefined;
    try {
      const e = this.suppressions.find(normalAddress(recipient), lookupScopes(policy, sender));
      if (!e) return undefined;
      const verdict = { action: policy.action, ...refusal(recipient, e) };
      // A drop's event comes with the message's queue id (noteDropped); a refusal has none.
      if (policy.action === 'refuse') this.events.suppressed(null, sender, recipient, `${verdict.code} ${verdict.text}`, listener);
      return verdict;
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'suppression list: lookup failed; the recipient is taken');
      return undefined;
    }
  }

  /** Suppressed recipients a message was taken for and not queued for (action: drop). */
  noteDropped(d: { listener: string; sender: string; queueId: string; recipients: string[] }): void {
    this.log.info({ listener: d.listener, queue_id: d.queueId, sender: d.sender, recipients: d.recipients }, `${d.queueId}: suppressed recipients dropped: ${d.recipients.join(', ')}`);
    for (const r of d.recipients) this.events.suppressed(d.queueId, d.sender, r, 'dropped: the recipient is suppressed', d.listener);
  }

  async shutdown(): Promise<void> {
    this.endpoint?.close();
    this.endpoint?.closeAllConnections();
    await this.scheduler.stop(this.config().shutdown_timeout);
    await this.events.stop();
    await this.cluster?.stop();
    await this.deliveryLog.close();
    await this.signer?.close();
    this.agent.cache.closeAll();
    await this.spool.flush();
    this.spool.close();
    this.suppressionList.close();
    this.complaints.close();
    this.compliance.stop();
  }
}
