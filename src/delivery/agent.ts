// The delivery agent (Postfix's smtp): one delivery request (a pool, a destination, some
// recipients, the body) through deliver.ts, with what it needs around it: the reused-connection
// cache, one MX resolver per direct-to-MX pool, the 7-bit conversion (re-signed when smtplb
// signed it) for a hop without 8BITMIME, a server another node found down tried last, and the
// counters and the recent errors the admin shows. The queue manager and cut-through both call it.
import fs from 'node:fs';
import type { Pool, PoolSet } from '../balancing/pool.js';
import { MxResolver } from '../discovery/mx.js';
import { deliver, type DeliveryRequest } from './deliver.js';
import { hasEightBit, ourTopFields, toSevenBit } from './seven-bit.js';
import { bodySize, UpstreamCache, type Body } from './upstream.js';
import type { Counter, Histogram, Labelled } from '../core/metric-shapes.js';

/** The counters a delivery reports to (the admin's Metrics has them). */
export interface DeliveryCounters {
  serverConnections: Labelled<Counter>;
  serverConnectFailures: Labelled<Counter>;
  connectSeconds: Labelled<Histogram>;
  deliveries: Labelled<Counter>;
  deliveryBytes: Labelled<Counter>;
  deliverySeconds: Labelled<Histogram>;
}

export interface AgentContext {
  pools: () => Map<string, Pool>;
  poolSet: PoolSet;
  /** The name smtplb greets with when the pool names none. */
  hostname: () => string;
  metrics: DeliveryCounters;
  /** Servers (`pool/server`) another node finds down. */
  downElsewhere: () => ReadonlySet<string> | undefined;
  signatureFor: (message: Buffer | string, domains: (string | undefined)[]) => Promise<string>;
}

export class DeliveryAgent {
  /** Connections kept open for the next message to the same destination. */
  readonly cache = new UpstreamCache();
  /** The last failed attempts (status and the admin's page). */
  readonly lastErrors: { at: string; pool: string; server: string; code: number | null; reply: string }[] = [];
  private resolvers = new Map<string, { key: string; resolver: MxResolver }>();

  constructor(private ctx: AgentContext) {}

  async deliver(req: DeliveryRequest) {
    // A server another node finds down is tried with care: only when no other primary is up,
    // until this node's own check (run at once) says otherwise.
    const elsewhere = this.ctx.downElsewhere();
    if (elsewhere?.size) {
      const p = this.ctx.pools().get(req.pool);
      const names = p ? p.servers.filter((s) => s.health.up && elsewhere.has(`${p.name}/${s.name}`)).map((s) => s.name) : [];
      if (names.length) req = { ...req, avoid: new Set([...(req.avoid ?? []), ...names]) };
    }
    const m = this.ctx.metrics;
    const r = await deliver(req, {
      mx: (pool, domain) => this.mx(pool, domain),
      sevenBit: (body) => this.sevenBit(body, req.params?.signed),
      pools: this.ctx.poolSet,
      cache: this.cache,
      helo: (p) => this.ctx.pools().get(p)?.cfg.helo ?? this.ctx.hostname(),
      connected: (pool, server, ms, ok) => {
        if (ok) {
          m.serverConnections.labels(pool.name, server.name).inc();
          m.connectSeconds.labels(pool.name).observe(ms / 1000);
        } else m.serverConnectFailures.labels(pool.name, server.name).inc();
      },
    });
    for (const a of r.attempts) {
      if (a.code === null || a.code >= 400) {
        this.lastErrors.push({ at: new Date(a.at).toISOString(), pool: req.pool, server: a.server, code: a.code, reply: a.text.slice(0, 300) });
        if (this.lastErrors.length > 50) this.lastErrors.shift();
      }
      const cls = a.code === null ? 'error' : `${String(a.code)[0]}xx`;
      m.deliveries.labels(req.pool, a.member, cls).inc();
      if (cls === '2xx') m.deliveryBytes.labels(req.pool, a.member).inc(bodySize(req.body));
      m.deliverySeconds.labels(req.pool).observe(a.ms / 1000);
    }
    return r;
  }

  /** One MX resolver per pool (each may name its own resolver); its cache also serves the MX sites (scheduler/site-keys.ts). */
  mx(pool: Pool, domain: string) {
    const key = JSON.stringify([pool.cfg.mx.resolver ?? null, pool.cfg.mx.timeout, pool.cfg.mx.retries]);
    let r = this.resolvers.get(pool.name);
    if (!r || r.key !== key) this.resolvers.set(pool.name, (r = { key, resolver: new MxResolver(pool.cfg.mx.resolver, { timeout: pool.cfg.mx.timeout, retries: pool.cfg.mx.retries }) }));
    return r.resolver.lookup(domain);
  }

  /**
   * A message for a hop without 8BITMIME: null when it is 7-bit already; else converted
   * (seven-bit.ts) and, when smtplb signed it, signed again for the same domain over the
   * converted text (a signature over the 8-bit text would fail at the receiver).
   */
  private async sevenBit(body: Body, signed: string | undefined): Promise<{ body: Body } | { error: string } | null> {
    const whole = Buffer.isBuffer(body) ? body : Buffer.concat([body.prefix ?? Buffer.alloc(0), await fs.promises.readFile(body.file)]);
    if (!hasEightBit(whole)) return null;
    // Our Received and signature stay apart: the client's message is what is converted and signed.
    const top = ourTopFields(whole, signed);
    // Signed at acceptance but the signature is not where smtplb put it: nothing to convert safely.
    if (signed && !top) return { error: 'the DKIM signature made at acceptance was not found to make again' };
    const conv = toSevenBit(top ? top.rest : whole);
    if (!conv.ok) return { error: conv.reason };
    if (!top) return { body: conv.message };
    const signature = top.signature ? await this.ctx.signatureFor(conv.message, [top.signature.domain]) : '';
    return { body: Buffer.concat([top.received, Buffer.from(signature, 'latin1'), conv.message]) };
  }
}
