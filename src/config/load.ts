// Reads the YAML config and validates it. Every problem is reported as
// "FILE:LINE:COL: key.path: what is wrong", so an operator can jump straight to it.
import fs from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import path from 'node:path';
import tls from 'node:tls';
import type { z } from 'zod';
import { isMap, isPair, isScalar, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { parseRoutesFromTransport } from '../routing/transport.js';
import { configSchema, poolSchema, type Config } from './schema.js';
import { formatAddress } from './units.js';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

type PathKey = string | number;
interface Problem { path: PathKey[]; message: string }

function keyPath(p: PathKey[]): string {
  return p.reduce<string>((s, k) => (typeof k === 'number' ? `${s}[${k}]` : s ? `${s}.${k}` : k), '') || '(top level)';
}

/** Offset of the node a path points at, or of its nearest existing ancestor. */
function locate(doc: Document, p: PathKey[], unknownKey?: string): number {
  for (let n = p.length; n >= 0; n--) {
    const node = (n === 0 ? doc.contents : doc.getIn(p.slice(0, n), true)) as Node | undefined;
    if (!node || !node.range) continue;
    if (n === p.length && unknownKey && isMap(node)) {
      const pair = node.items.find((it) => isPair(it) && isScalar(it.key) && it.key.value === unknownKey);
      if (pair && isScalar(pair.key) && pair.key.range) return pair.key.range[0];
    }
    if (n < p.length && isMap(node)) {
      // Missing key: point at the map that should hold it.
      return node.range[0];
    }
    return node.range[0];
  }
  return 0;
}

function describeValue(doc: Document, p: PathKey[]): string {
  const v = doc.getIn(p);
  if (v === undefined || v === null || typeof v === 'object') return '';
  return ` (got ${JSON.stringify(v)})`;
}

/** Checks that span several parts of the config: names, references, port clashes. */
function crossChecks(c: Config): Problem[] {
  const out: Problem[] = [];
  const pools = new Set(Object.keys(c.pools));
  const seenNames = new Map<string, number>();
  const seenPorts = new Map<string, number>();
  c.listeners.forEach((l, i) => {
    if (seenNames.has(l.name)) out.push({ path: ['listeners', i, 'name'], message: `listener name "${l.name}" is already used by listeners[${seenNames.get(l.name)}]` });
    seenNames.set(l.name, i);
    for (const [key, j] of seenPorts) {
      const [host, port] = [key.slice(0, key.lastIndexOf('|')), Number(key.slice(key.lastIndexOf('|') + 1))];
      const wildcard = (h: string) => h === '0.0.0.0' || h === '::';
      if (port === l.listen.port && (host === l.listen.host || wildcard(host) || wildcard(l.listen.host))) {
        out.push({ path: ['listeners', i, 'listen'], message: `${formatAddress(l.listen)} clashes with listeners[${j}] on the same port` });
      }
    }
    seenPorts.set(`${l.listen.host}|${l.listen.port}`, i);
    if (l.mode === 'tcp' && !l.pool) out.push({ path: ['listeners', i, 'pool'], message: 'a mode: tcp listener needs a pool' });
    if (l.pool && !pools.has(l.pool)) out.push({ path: ['listeners', i, 'pool'], message: `no pool named "${l.pool}" (pools: ${[...pools].join(', ') || 'none'})` });
    if (l.require_auth && !l.tls) out.push({ path: ['listeners', i, 'require_auth'], message: 'AUTH is only offered over TLS: add tls: { cert, key }' });
  });
  if (c.listeners.some((l) => l.mode === 'smtp') && c.routes.length === 0) {
    out.push({ path: ['routes'], message: 'mode: smtp listeners need routes (at least a default route: - { pool: NAME })' });
  }
  c.routes.forEach((r, i) => {
    if (!pools.has(r.pool)) out.push({ path: ['routes', i, 'pool'], message: `no pool named "${r.pool}" (pools: ${[...pools].join(', ') || 'none'})` });
  });
  for (const [name, p] of Object.entries(c.pools)) {
    if (p.kind === 'mx') {
      if (p.servers.length || p.discover) out.push({ path: ['pools', name, 'servers'], message: 'a kind: mx pool sends to MX hosts: give sources (local addresses), not servers' });
      if (p.sources.length === 0) out.push({ path: ['pools', name, 'sources'], message: 'a kind: mx pool needs sources: [ { address: LOCAL_IP } ]' });
    } else if (p.servers.length === 0 && !p.discover) out.push({ path: ['pools', name, 'servers'], message: 'a pool needs servers or discover' });
    else if (p.sources.length) out.push({ path: ['pools', name, 'sources'], message: 'sources are for kind: mx pools; a relay pool binds with servers[].source' });
    if (p.fallback !== undefined) {
      if (!pools.has(p.fallback)) out.push({ path: ['pools', name, 'fallback'], message: `no pool named "${p.fallback}"` });
      else {
        // A fallback chain must end; a loop would bounce a connection forever.
        const seen = new Set([name]);
        let next: string | undefined = p.fallback;
        while (next && pools.has(next)) {
          if (seen.has(next)) {
            out.push({ path: ['pools', name, 'fallback'], message: `fallback chain loops back to "${next}"` });
            break;
          }
          seen.add(next);
          next = c.pools[next].fallback;
        }
      }
    }
    const names = new Map<string, number>();
    p.servers.forEach((s, i) => {
      const n = s.name ?? formatAddress(s.address);
      if (names.has(n)) out.push({ path: ['pools', name, 'servers', i, s.name ? 'name' : 'address'], message: `server "${n}" appears twice in pool ${name}` });
      names.set(n, i);
    });
  }
  // The gate reads the identity checks the relay runs every doctor.interval: with them off it would hold mail forever (or gate nothing).
  if (c.compliance && c.doctor?.interval === 0) out.push({ path: ['doctor', 'interval'], message: 'compliance: gates on the identity checks run every doctor.interval; it cannot be 0 while compliance: is set' });
  if (c.admin && !isLoopback(c.admin.listen.host) && !c.admin.token) {
    out.push({ path: ['admin', 'listen'], message: 'the admin API binds beyond loopback only with a token' });
  }
  return out;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** Parse and validate config text; `file` is used in messages and to resolve relative paths. */
export function parseConfig(text: string, file: string): Config {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number) => {
    const { line, col } = lc.linePos(offset);
    return `${file}:${line}:${col}`;
  };
  if (doc.errors.length) {
    throw new ConfigError(doc.errors.map((e) => `${at(e.pos[0])}: YAML syntax: ${e.message.split('\n')[0]}`));
  }
  let raw: unknown;
  try {
    // toJS resolves aliases: an alias to an anchor that is not there (an unquoted "*.example.com") throws.
    raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (e) {
    const hint = /alias/i.test((e as Error).message) ? ' (a value starting with * is a YAML alias: quote it, e.g. "*.example.com")' : '';
    throw new ConfigError([`${file}:1:1: YAML: ${(e as Error).message.split('\n')[0]}${hint}`]);
  }
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError([`${file}:1:1: the config must be a mapping of keys`]);
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.flatMap((iss) => {
      const p = iss.path as PathKey[];
      if (iss.code === 'unrecognized_keys') {
        return iss.keys.map((k) => `${at(locate(doc, p, k))}: ${keyPath([...p, k])}: unknown key "${k}"`);
      }
      const missing = iss.code === 'invalid_type' && doc.getIn(p) === undefined;
      const msg = missing ? 'is required' : iss.code === 'custom' ? iss.message : iss.message + describeValue(doc, p);
      return [`${at(locate(doc, p))}: ${keyPath(p)}: ${msg}`];
    });
    throw new ConfigError(problems);
  }
  const expanded = expandTransports(result.data, path.dirname(path.resolve(file)));
  if ('problem' in expanded) throw new ConfigError([`${at(locate(doc, expanded.path))}: ${keyPath(expanded.path)}: ${expanded.problem}`]);
  const config = expanded.config;
  const cross = crossChecks(config);
  if (cross.length) throw new ConfigError(cross.map((pr) => `${at(locate(doc, pr.path))}: ${keyPath(pr.path)}: ${pr.message}`));
  const resolved = resolvePaths(config, path.dirname(path.resolve(file)));
  const files = fileChecks(resolved);
  if (files.length) throw new ConfigError(files.map((pr) => `${at(locate(doc, pr.path))}: ${keyPath(pr.path)}: ${pr.message}`));
  return resolved;
}

/** Files the config names must be usable now, not at the first message that needs them. */
function fileChecks(c: Config): Problem[] {
  const out: Problem[] = [];
  for (const [i, l] of c.listeners.entries()) {
    if (!l.tls) continue;
    const at: PathKey[] = ['listeners', i, 'tls'];
    let cert: Buffer;
    let key: Buffer;
    try {
      cert = fs.readFileSync(l.tls.cert);
    } catch (e) {
      out.push({ path: [...at, 'cert'], message: `cannot read ${l.tls.cert}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
      continue;
    }
    try {
      key = fs.readFileSync(l.tls.key);
    } catch (e) {
      out.push({ path: [...at, 'key'], message: `cannot read ${l.tls.key}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
      continue;
    }
    try {
      new X509Certificate(cert);
    } catch {
      out.push({ path: [...at, 'cert'], message: `${l.tls.cert} is not a PEM certificate` });
      continue;
    }
    try {
      tls.createSecureContext({ cert, key });
    } catch (e) {
      const msg = (e as Error).message;
      out.push({ path: [...at, 'key'], message: /mismatch/i.test(msg) ? `${l.tls.key} does not match the certificate ${l.tls.cert}` : `${l.tls.key} is not a usable private key (${msg})` });
    }
  }
  for (const [domain, k] of Object.entries(c.dkim?.domains ?? {})) {
    const at: PathKey[] = ['dkim', 'domains', domain, 'key_file'];
    try {
      const key = createPrivateKey(fs.readFileSync(k.key_file));
      const want = k.algorithm.startsWith('ed25519') ? 'ed25519' : 'rsa';
      if (key.asymmetricKeyType !== want) out.push({ path: at, message: `${k.key_file} holds a ${key.asymmetricKeyType} key, but algorithm is ${k.algorithm}` });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      out.push({ path: at, message: code === 'ENOENT' || code === 'EACCES' ? `cannot read ${k.key_file}: ${code}` : `${k.key_file} is not a PEM private key` });
    }
  }
  return out;
}

/** `routes: - { postfix_transport: FILE }` becomes one route and one single-server pool per line. */
function expandTransports(raw: z.output<typeof configSchema>, dir: string): { config: Config } | { problem: string; path: PathKey[] } {
  const routes: Config['routes'] = [];
  const pools = { ...raw.pools };
  for (const [i, r] of raw.routes.entries()) {
    if (!('postfix_transport' in r)) {
      routes.push(r);
      continue;
    }
    const f = path.resolve(dir, r.postfix_transport);
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch (e) {
      return { problem: `cannot read ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, path: ['routes', i, 'postfix_transport'] };
    }
    try {
      for (const t of parseRoutesFromTransport(text)) {
        const name = `transport-${t.host}-${t.port}`;
        pools[name] ??= poolSchema.parse({ servers: [{ name: `${t.host}-${t.port}`, address: `${t.host}:${t.port}` }], ...(r.tls ? { tls: r.tls } : {}) });
        routes.push({ domains: t.domains, pool: name });
      }
    } catch (e) {
      return { problem: `${f}: ${(e as Error).message}`, path: ['routes', i, 'postfix_transport'] };
    }
  }
  return { config: { ...raw, routes, pools } };
}

/** Relative file paths in the config are relative to the config file, as operators expect. */
function resolvePaths(c: Config, dir: string): Config {
  const abs = (p: string) => path.resolve(dir, p);
  c.spool = abs(c.spool);
  for (const l of c.listeners) if (l.tls) l.tls = { ...l.tls, cert: abs(l.tls.cert), key: abs(l.tls.key) };
  for (const k of Object.values(c.dkim?.domains ?? {})) k.key_file = abs(k.key_file);
  if (c.delivery_log.file) c.delivery_log.file = abs(c.delivery_log.file);
  return c;
}

/** Lines of a config, with the positions of keys, so runtime errors can name them too. */
export function locateKey(text: string, file: string, p: PathKey[]): string {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc });
  const { line, col } = lc.linePos(locate(doc, p));
  return `${file}:${line}:${col}: ${keyPath(p)}`;
}

/** Not errors, but what an operator must hear: certificates expired or expiring within 30 days. */
export function configWarnings(loaded: LoadedConfig, now = Date.now()): string[] {
  const out: string[] = [];
  for (const [i, l] of loaded.config.listeners.entries()) {
    if (!l.tls) continue;
    try {
      const until = Date.parse(new X509Certificate(fs.readFileSync(l.tls.cert)).validTo);
      const days = Math.floor((until - now) / 86_400_000);
      const where = locateKey(loaded.text, loaded.file, ['listeners', i, 'tls', 'cert']);
      if (until < now) out.push(`${where}: ${l.tls.cert} expired on ${new Date(until).toISOString()}`);
      else if (days < 30) out.push(`${where}: ${l.tls.cert} expires in ${days} days (${new Date(until).toISOString()})`);
    } catch {
      /* reported as an error by fileChecks */
    }
  }
  return out;
}

export interface LoadedConfig { config: Config; file: string; text: string }

export function loadConfig(file: string): LoadedConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError([`${file}: cannot read the config file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`]);
  }
  return { config: parseConfig(text, file), file, text };
}
