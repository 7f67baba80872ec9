// The config file's shape. Keys are snake_case as operators write them; zod turns the
// textual values (durations, addresses, networks) into plain data the runtime uses directly.
import net from 'node:net';
import os from 'node:os';
import { ADDRESS_CLASSES } from '../suppression/rules.js';
import { OUTCOME_CLASSES } from '../outcomes/reply-class.js';
import { EVENT_TYPES } from '../events/event.js';
import { PROVIDER_SHAPING } from '../routing/providers.js';
import { z } from 'zod';
import { parseAddress, parseCidr, parseDay, parseDuration, parseRate, parseSize } from './units.js';

function parsed<T>(fn: (v: string) => T, what: string) {
  return z.union([z.string(), z.number()], { error: `expected ${what}` }).transform((v, ctx) => {
    try {
      return fn(String(v));
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
      return z.NEVER;
    }
  });
}

const duration = z.union([z.string(), z.number()], { error: 'expected a duration such as 500ms, 2s, 5m' }).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});
const address = parsed(parseAddress, 'an address host:port');
const size = parsed(parseSize, 'a size such as 25MB');
const cidr = parsed(parseCidr, 'a network such as 10.0.0.0/8');
const rate = parsed(parseRate, 'a rate such as 600/min');
const day = parsed(parseDay, 'a date such as 2026-11-27');
const regex = z.string().transform((v, ctx) => {
  const risky = riskyPattern(v);
  if (risky) {
    ctx.addIssue({ code: 'custom', message: `pattern refused: ${risky}` });
    return z.NEVER;
  }
  try {
    return new RegExp(v, 'i');
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: `not a valid regular expression: ${(e as Error).message}` });
    return z.NEVER;
  }
});

/**
 * Why a user's pattern could take the event loop (matched against every upstream reply), or
 * null. JavaScript's engine backtracks: a quantified group that itself contains a quantifier
 * (`(a+)+`, `(\w*x?)*`) or a back-reference can take exponential time on a crafted reply.
 * Replies are cut to 4 KB before matching, which bounds the polynomial cases.
 */
export function riskyPattern(source: string): string | null {
  if (source.length > 500) return 'longer than 500 characters';
  if (/\\[1-9]|\\k</.test(source)) return 'back-references can take exponential time';
  // Walk the pattern: for each group, remember whether it holds a quantifier.
  const stack: boolean[] = [];
  let inner = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '[') {
      // A character class: quantifier characters inside are literals.
      for (i++; i < source.length && source[i] !== ']'; i++) if (source[i] === '\\') i++;
      continue;
    }
    if (c === '(') {
      stack.push(inner);
      inner = false;
      continue;
    }
    const quantifier = c === '*' || c === '+' || (c === '{' && /^\{\d*,?\d*\}/.test(source.slice(i)));
    if (c === ')') {
      const had: boolean = inner;
      inner = stack.pop() ?? false;
      const next = source[i + 1];
      const repeated = next === '*' || next === '+' || (next === '{' && /^\{\d*,\d*\}|^\{\d*[2-9]\d*\}/.test(source.slice(i + 1)));
      if (had && repeated) return 'a repeated group contains a repeat or alternatives (this can take exponential time); write it without the outer repeat';
      inner = inner || had;
      continue;
    }
    // Alternatives that can match the same text are exponential under a repeat too: `(a|a)*`.
    if (quantifier || c === '|') inner = true;
  }
  return null;
}
const int = (min: number, max: number) =>
  z.number({ error: 'expected a number' }).int({ error: 'expected a whole number' }).min(min).max(max);
const name = z.string({ error: 'expected a name' }).regex(/^[A-Za-z0-9_.-]+$/, { error: 'names may use letters, digits, _ . -' });
const proxyVersion = z.enum(['v1', 'v2'], { error: 'expected v1 or v2' });

export const healthSchema = z.strictObject({
  check: z.enum(['tcp', 'smtp', 'none'], { error: 'expected tcp, smtp or none' }).default('smtp'),
  interval: duration.default(2000),
  timeout: duration.default(2000),
  rise: int(1, 100).default(2),
  fall: int(1, 100).default(3),
  starttls: z.boolean().default(false),
  helo: z.string().optional(),
});

export const warmupSchema = z.strictObject({
  start: day,
  schedule: z.array(int(0, 100_000_000)).min(1, { error: 'give at least one daily cap' }),
  overflow: z.enum(['spill', 'hold'], { error: 'expected spill (to the other servers) or hold' }).default('spill'),
});

export const serverSchema = z.strictObject({
  name: name.optional(),
  address,
  weight: int(0, 256).default(1),
  max_connections: int(1, 1_000_000).optional(),
  backup: z.boolean().default(false),
  source: z.string().optional(),
  warmup: warmupSchema.optional(),
});

export const discoverSchema = z
  .strictObject({
    a: z.string().optional(),
    srv: z.string().optional(),
    port: int(1, 65535).optional(),
    resolver: address.optional(),
    refresh: duration.optional(),
    min_ttl: duration.default(1000),
  })
  .superRefine((d, ctx) => {
    if (!!d.a === !!d.srv) ctx.addIssue({ code: 'custom', message: 'give exactly one of a: NAME or srv: NAME' });
    if (d.a && !d.port) ctx.addIssue({ code: 'custom', message: 'discover.a needs a port', path: ['port'] });
  });

export const outlierSchema = z.strictObject({
  consecutive_failures: int(1, 1000).default(3),
  ejection: duration.default(5000),
  max_ejection: duration.default(300_000),
});

export const sourceSchema = z.strictObject({
  name: name.optional(),
  /** Local address to send from. */
  address: z.string().refine((v) => net.isIP(v) !== 0, { error: 'expected an IP address to bind to' }),
  helo: z.string().optional(),
  weight: int(0, 256).default(1),
  max_connections: int(1, 1_000_000).optional(),
  warmup: warmupSchema.optional(),
});

export const poolSchema = z.strictObject({
  /** relay: deliver to the listed servers; mx: straight to each destination's MX hosts, from `sources`. */
  kind: z.enum(['relay', 'mx'], { error: 'expected relay or mx' }).default('relay'),
  /** Count `site:` shaping per MX site: `mx` looks the destination's MX up (the default for kind: mx), `none` keeps per-domain keys (the default for relays). */
  site_lookup: z.enum(['mx', 'none'], { error: 'expected mx or none' }).optional(),
  sources: z.array(sourceSchema).default([]),
  mx: z.strictObject({ resolver: address.optional(), port: int(1, 65535).default(25), timeout: duration.default(2000), retries: int(0, 10).default(2) }).default({ port: 25, timeout: 2000, retries: 2 }),
  balance: z
    .enum(['roundrobin', 'leastconn', 'first', 'random2', 'source'], {
      error: 'expected roundrobin, leastconn, first, random2 or source',
    })
    .default('roundrobin'),
  servers: z.array(serverSchema).default([]),
  discover: discoverSchema.optional(),
  health: healthSchema.default(healthSchema.parse({})),
  fallback: name.optional(),
  slowstart: duration.default(0),
  retries: int(0, 100).default(3),
  connect_timeout: duration.default(5000),
  queue_timeout: duration.default(5000),
  outlier: outlierSchema.default(outlierSchema.parse({})),
  send_proxy: proxyVersion.optional(),
  helo: z.string().optional(),
  // mode smtp delivery through this pool
  tls: z.enum(['none', 'may', 'require', 'verify'], { error: 'expected none, may, require or verify' }).default('may'),
  auth: z.strictObject({ user: z.string(), pass: z.string() }).optional(),
  // `idle`: how long an unused connection stays open for the next message (Postfix's
  // smtp_connection_cache_time_limit, 2 s). Kept longer, idle connections of one process hold
  // the upstream's session slots (a process limit, smtp-sink's -m, Postfix's smtpd processes)
  // while another process's new connections wait unanswered in its accept queue.
  reuse: z.strictObject({ messages: int(1, 100_000).default(100), seconds: duration.default(30_000), idle: duration.default(2000) }).default({ messages: 100, seconds: 30_000, idle: 2000 }),
  destination_concurrency: int(1, 10_000).default(20),
  timeout: duration.default(60_000),
  /** The wait for the reply to the final dot (RFC 5321 4.5.3.2.6: 10 minutes). */
  data_timeout: duration.default(600_000),
});

/**
 * Mozilla's "intermediate" server profile (ssl-config.mozilla.org, v5.7): TLS 1.3's suites, and
 * for TLS 1.2 the ECDHE/DHE AEAD suites only (no CBC, no static RSA key exchange).
 */
export const INTERMEDIATE_CIPHERS = [
  'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305', 'DHE-RSA-AES128-GCM-SHA256', 'DHE-RSA-AES256-GCM-SHA384', 'DHE-RSA-CHACHA20-POLY1305',
].join(':');

export const tlsSchema = z.strictObject({
  cert: z.string(),
  key: z.string(),
  implicit: z.boolean().default(false),
  /** OpenSSL cipher list (TLS 1.3 suites by their TLS_ names in the same list); Mozilla's intermediate profile by default. */
  ciphers: z.string().min(1).default(INTERMEDIATE_CIPHERS),
  min_version: z.enum(['TLSv1.2', 'TLSv1.3'], { error: 'expected TLSv1.2 or TLSv1.3' }).default('TLSv1.2'),
});

export const listenerSchema = z.strictObject({
  name,
  listen: address,
  mode: z.enum(['tcp', 'smtp'], { error: 'expected tcp or smtp' }).default('smtp'),
  pool: name.optional(),
  // mode tcp
  send_proxy: proxyVersion.optional(),
  accept_proxy: z.array(cidr).optional(),
  max_connections: int(1, 1_000_000).optional(),
  client_timeout: duration.default(300_000),
  server_timeout: duration.default(300_000),
  // mode smtp
  relay_networks: z.array(cidr).default([]),
  require_auth: z.boolean().default(false),
  tls: tlsSchema.optional(),
  delivery: z.enum(['queue', 'cutthrough'], { error: 'expected queue or cutthrough' }).default('queue'),
  class: name.optional(),
  max_message_size: size.default(25 * 1024 * 1024),
  max_recipients: int(1, 100_000).default(1000),
  max_clients: int(1, 1_000_000).default(10_000),
  max_connections_per_ip: int(1, 100_000).default(100),
  max_auth_failures: int(1, 1000).default(5),
  /** Relay-network clients: sign for the header From domain only when aligned with the envelope sender (see policy/identity.ts), or for any. */
  identity: z.enum(['aligned', 'any'], { error: 'expected aligned or any' }).default('aligned'),
  cutthrough_fallback: z.enum(['queue', 'reject'], { error: 'expected queue or reject' }).default('queue'),
  /** A bare CR or LF in DATA: made CRLF (Postfix's smtpd_forbid_bare_newline = normalize), or the message refused with 550 5.5.2. */
  bare_line_endings: z.enum(['normalize', 'reject'], { error: 'expected normalize or reject' }).default('normalize'),
  /** Refuse (554 5.5.0, then close) a client that pipelines where RFC 2920 does not allow it: past EHLO, HELO, DATA or STARTTLS, or without having been offered PIPELINING (Postfix's smtpd_forbid_unauth_pipelining). */
  forbid_unauth_pipelining: z.boolean().default(true),
});

export const routeSchema = z.strictObject({
  domains: z.array(z.string()).optional(),
  class: name.optional(),
  sender_domains: z.array(z.string()).optional(),
  user: z.string().optional(),
  listener: name.optional(),
  pool: name,
});

export const userSchema = z.strictObject({
  name: z.string(),
  password: z.string(),
  class: name.optional(),
  sender_domains: z.array(z.string()).optional(),
  /** Tags on every message of this user's events (they win over the message's X-Smtplb-Tags). */
  tags: z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, { error: 'a tag name is letters, digits, _ . - (64 at most)' }), z.string().max(256)).optional(),
});

export const shapingRuleSchema = z.strictObject({
  concurrency: int(1, 10_000).optional(),
  rate: rate.optional(),
  burst: int(1, 100_000).default(1),
  messages_per_connection: int(1, 100_000).optional(),
  connect_rate: rate.optional(),
});

/**
 * `shaping:` entries per destination (a domain, `*.parent`, `default`, or `site:NAME` for an
 * MX site) and `preset: providers`, the shipped provider rulebook (routing/providers.ts) under
 * the operator's own entries: a field the operator sets wins over the preset's.
 */
export const shapingSchema = z
  .object({ preset: z.enum(['providers'], { error: 'expected providers' }).optional() })
  .catchall(shapingRuleSchema)
  .transform(({ preset, ...rules }) => {
    const own = rules as Record<string, z.output<typeof shapingRuleSchema>>;
    if (!preset) return own;
    const out: Record<string, z.output<typeof shapingRuleSchema>> = {};
    for (const [key, r] of Object.entries(PROVIDER_SHAPING)) {
      out[key] = { burst: 1, ...(r.concurrency ? { concurrency: r.concurrency } : {}), ...(r.rate ? { rate: parseRate(r.rate) } : {}), ...(r.messages_per_connection ? { messages_per_connection: r.messages_per_connection } : {}) };
    }
    for (const [key, r] of Object.entries(own)) out[key] = { ...out[key], ...r };
    return out;
  });

const hostPattern = z.string().regex(/^(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$/, { error: 'expected a host name or *.domain' });

export const backoffSchema = z.strictObject({
  patterns: z.array(regex).default([]),
  decrease: z.number().gt(0).lt(1).default(0.5),
  min_factor: z.number().gt(0).max(1).default(0.1),
  increase: z.number().gt(0).max(1).default(0.05),
  suspend_after: int(1, 1000).default(5),
  window: duration.default(60_000),
  suspend_for: duration.default(600_000),
});

export const classesSchema = z.strictObject({
  /** Header a trusted client may use to name the class; removed before signing and delivery. */
  header: z.string().regex(/^[A-Za-z0-9-]+$/).default('X-Traffic-Class'),
  sender_domains: z.record(z.string(), name).default({}),
});

export const dkimKeySchema = z.strictObject({
  selector: z.string().regex(/^[A-Za-z0-9._-]+$/, { error: 'a selector is a DNS label' }),
  key_file: z.string(),
  algorithm: z.enum(['rsa-sha256', 'ed25519-sha256'], { error: 'expected rsa-sha256 or ed25519-sha256' }).default('rsa-sha256'),
});

export const configSchema = z.strictObject({
  hostname: z.string().default(os.hostname()),
  spool: z.string().default('./data/spool'),
  workers: z.union([z.literal('auto'), int(1, 64)], { error: 'expected auto or a number of processes' }).default(1),
  max_connections: int(1, 1_000_000).default(20_000),
  shutdown_timeout: duration.default(30_000),
  log: z
    .strictObject({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      format: z.enum(['auto', 'json', 'pretty']).default('auto'),
    })
    .default({ level: 'info', format: 'auto' }),
  admin: z
    .strictObject({
      listen: address,
      token: z.string().min(8, { error: 'use a token of at least 8 characters' }).optional(),
    })
    .optional(),
  listeners: z.array(listenerSchema).min(1, { error: 'at least one listener is needed' }),
  users: z.array(userSchema).default([]),
  pools: z.record(name, poolSchema).default({}),
  routes: z.array(z.union([routeSchema, z.strictObject({ postfix_transport: z.string(), tls: z.enum(['none', 'may', 'require', 'verify']).optional() })], { error: 'a route is { domains, class, sender_domains, user, listener, pool } or { postfix_transport: FILE }' })).default([]),
  classes: classesSchema.default({ header: 'X-Traffic-Class', sender_domains: {} }),
  /** MX sites by name: host-name patterns of the MX hosts on it, over the shipped PROVIDER_SITES (a name given here replaces the shipped one). */
  sites: z.record(name, z.array(hostPattern).min(1)).default({}),
  shaping: shapingSchema.default({}),
  backoff: backoffSchema.default(backoffSchema.parse({})),
  dkim: z
    .strictObject({
      domains: z.record(z.string(), dkimKeySchema).default({}),
      headers: z.array(z.string()).optional(),
      threads: int(1, 64).default(2),
    })
    .optional(),
  /**
   * Several smtplb nodes sharing limits, warm-up counts, backoff, suspensions, overrides and
   * server drain/weight through Redis. Each node keeps its own spool.
   */
  cluster: z
    .strictObject({
      redis: z.string().regex(/^rediss?:\/\/[^\s]+$/, { error: 'expected a Redis URL such as redis://127.0.0.1:6379/0' }),
      node: name.default(os.hostname().replace(/[^A-Za-z0-9_.-]/g, '-')),
      /** A concurrency lease not renewed for this long is given back (a dead node's capacity returns). */
      lease_ttl: duration.default(15_000),
      /** A Redis command slower than this puts the node on its local share of the limits. */
      timeout: duration.default(500),
      /** How often a node says it is alive and reads suspensions, overrides and drains. */
      sync: duration.default(250),
      /** Key prefix, so several clusters can share one Redis. */
      prefix: z.string().regex(/^[A-Za-z0-9_.:-]{1,40}$/).default('smtplb'),
    })
    .optional(),
  /** Identity checks (`smtplb doctor`, and in the background every `interval`; 0 turns that off). */
  doctor: z.strictObject({ resolver: address.optional(), interval: duration.default(3_600_000), timeout: duration.default(2000) }).optional(),
  delivery_log: z
    .strictObject({ file: z.string().optional() })
    .default({}),
  /** Every outcome as an event to the application (src/events): webhooks and a file of JSON lines. */
  events: z
    .strictObject({
      webhooks: z
        .array(
          z.strictObject({
            url: z.string().regex(/^https?:\/\/[^\s]+$/, { error: 'expected an http:// or https:// URL' }),
            /** Signs each body: X-Smtplb-Signature: sha256=HMAC(secret, body). */
            secret: z.string().min(16, { error: 'use a secret of at least 16 characters' }).optional(),
            types: z.array(z.enum(EVENT_TYPES, { error: `expected one of ${EVENT_TYPES.join(', ')}` })).optional(),
            batch: int(1, 1000).default(100),
            timeout: duration.default(5000),
          }),
        )
        .refine((hooks) => new Set(hooks.map((h) => h.url)).size === hooks.length, { error: 'each webhook URL once (a receiver that wants several types lists them in one entry)' })
        .default([]),
      /** Appends one JSON line per event (SIGUSR1 is not needed: each write opens the path afresh). */
      file: z.string().optional(),
      /** Events kept for sinks that do not take them; past it the oldest are dropped (counted). */
      max_outbox: int(1000, 100_000_000).default(1_000_000),
      /** The header an application tags a message with (`k=v, k2=v2`); taken out before signing. */
      tags_header: z.string().regex(/^[A-Za-z0-9-]+$/).default('X-Smtplb-Tags'),
    })
    .optional(),
  /**
   * One-click unsubscribe (RFC 8058, src/unsubscribe): per traffic class, List-Unsubscribe
   * added to messages without one (`add`) or required of them (`require`), and the public
   * endpoint its URLs point at.
   */
  unsubscribe: z
    .strictObject({
      /** The public HTTP listener of /u/TOKEN (apart from the admin one). */
      listen: address.optional(),
      base_url: z.string().regex(/^https?:\/\/[^\s/?#<>]+(\/[^\s?#<>]*)?$/, { error: 'expected a URL such as https://u.example.com' }),
      secret: z.string().min(16, { error: 'use a secret of at least 16 characters' }),
      mailto: z.string().regex(/^[^\s@<>?]+@[A-Za-z0-9.-]+$/, { error: 'expected an address such as unsub@example.com' }).optional(),
      max_age: duration.default(90 * 86_400_000),
      classes: z.record(name, z.strictObject({ add: z.boolean().default(false), require: z.boolean().default(false) })).default({}),
    })
    .optional(),
  /**
   * Complaints (ARF feedback-loop reports, src/feedback): taken at these addresses on any
   * smtp listener, the recipient suppressed, `complained` told, rates per domain, class and tag
   * kept.
   */
  feedback: z
    .strictObject({
      addresses: z.array(z.string().regex(/^[^\s@<>]+@[A-Za-z0-9.-]+$/, { error: 'expected an address such as fbl@example.com' })).min(1, { error: 'give at least one feedback address' }),
      keep: duration.default(30 * 86_400_000),
    })
    .optional(),
  /** What a complaint rate does (with `feedback:`): a class or tag at `pause_at` is paused. */
  complaints: z
    .strictObject({
      pause_at: z.string().regex(/^\d+(\.\d+)?%$/, { error: 'expected a percentage such as 0.3%' }).transform((v) => parseFloat(v) / 100).optional(),
      min_delivered: int(1, 1_000_000_000).default(1000),
      pause_for: duration.default(86_400_000),
    })
    .optional(),
  /**
   * The compliance gate (src/compliance): bulk classes checked at send time against the
   * doctor's findings for their sending domain and egress; `hold` keeps failing mail queued.
   */
  compliance: z
    .strictObject({
      mode: z.enum(['warn', 'hold'], { error: 'expected warn or hold' }).default('warn'),
      classes: z.array(name).min(1, { error: 'name the bulk classes to gate' }),
      recheck: duration.default(60_000),
    })
    .optional(),
  /** The operator's reply classes, checked before the shipped rules: the first pattern that matches the reply text decides. */
  classify: z.array(z.strictObject({ pattern: regex, class: z.enum(OUTCOME_CLASSES, { error: `expected one of ${OUTCOME_CLASSES.join(', ')}` }) })).default([]),
  /**
   * Addresses not to send to again (src/suppression): fed by permanent failures that say the
   * address is bad, and by the operator; checked at RCPT.
   */
  suppression: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** Each sending domain has its own list (`sender_domain`), or one list holds for all (`global`). */
      scope: z.enum(['sender_domain', 'global'], { error: 'expected sender_domain or global' }).default('sender_domain'),
      /** `refuse`: 550 5.1.1 at RCPT; `drop`: accepted, not delivered, logged. */
      action: z.enum(['refuse', 'drop'], { error: 'expected refuse or drop' }).default('refuse'),
      /** The reply classes whose final 5xx adds the recipient (only classes about the address itself). */
      from_classes: z.array(z.enum(ADDRESS_CLASSES, { error: `expected one of ${ADDRESS_CLASSES.join(', ')} (classes about the sender or the path never suppress an address)` })).default(['invalid-recipient', 'inactive-mailbox', 'bad-domain']),
      /** How long an entry from a bounce lasts; 0 keeps it until removed. */
      bounce_ttl: duration.default(0),
    })
    .default({ enabled: true, scope: 'sender_domain', action: 'refuse', from_classes: ['invalid-recipient', 'inactive-mailbox', 'bad-domain'], bounce_ttl: 0 }),
  queue: z
    .strictObject({
      retry: z.array(duration).min(1).default([60_000, 300_000, 900_000, 1_800_000, 3_600_000]),
      max_age: duration.default(5 * 86_400_000),
      /** Refuse new mail (452 4.3.1) when the spool's disk has less free space than this. */
      min_free: size.default(100 * 1024 * 1024),
      /** Deliveries in flight at once, all destinations together (Postfix's default_process_limit). */
      max_deliveries: int(1, 100_000).default(500),
      /** A "delayed" DSN once a recipient has waited this long (Postfix's delay_warning_time); 0, the default, sends none. */
      delay_warning: duration.default(0),
    })
    .default({ retry: [60_000, 300_000, 900_000, 1_800_000, 3_600_000], max_age: 5 * 86_400_000, min_free: 100 * 1024 * 1024, max_deliveries: 500, delay_warning: 0 }),
});

type RawConfig = z.output<typeof configSchema>;
export type RouteConfig = z.output<typeof routeSchema>;
/** After loading, `postfix_transport` entries are expanded into plain routes and pools. */
export type Config = Omit<RawConfig, 'routes'> & { routes: RouteConfig[] };
export type PoolConfig = z.output<typeof poolSchema>;
export type ServerConfig = z.output<typeof serverSchema>;
export type ListenerConfig = z.output<typeof listenerSchema>;
export type HealthConfig = z.output<typeof healthSchema>;
export type ShapingRule = z.output<typeof shapingRuleSchema>;
export type BackoffConfig = z.output<typeof backoffSchema>;
export type WarmupConfig = z.output<typeof warmupSchema>;
export type EventsConfig = NonNullable<z.output<typeof configSchema>['events']>;
export type SuppressionConfig = z.output<typeof configSchema>['suppression'];
export type ClusterConfig = NonNullable<z.output<typeof configSchema>['cluster']>;
export type DiscoverConfig = z.output<typeof discoverSchema>;
