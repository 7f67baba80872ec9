// The DNS side of the identity checks: asks the resolver what the world sees (TXT, MX, PTR, A,
// the MTA-STS policy file) and runs mailauth's SPF evaluation against it, and hands the answers
// to checks.ts as plain data. Nothing here decides whether something is wrong; keeping the
// I/O at this edge is what lets the checks be tested without sockets.
import { createPrivateKey, createPublicKey } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import type { DNSResolver } from 'mailauth';
import { spf } from 'mailauth/lib/spf/index.js';
import { parsePolicy, resolvePolicy } from 'mailauth/lib/mta-sts.js';
import getDmarcRecord from 'mailauth/lib/dmarc/get-dmarc-record.js';
import type { DkimFacts, DmarcFacts, MxFacts, PtrFacts, SpfEval, SpfFacts, StsFacts } from './checks.js';
import type { Egress, EgressSpec, SendingDomain } from './inventory.js';
import { reverseName } from './inventory.js';
import { answer, type Answer, type Lookup } from './lookup.js';

/** An address no one sends from (240/4 is reserved): evaluating SPF for it walks the whole record. */
export const PROBE_IP = '240.0.0.1';

/** At most this many MX hosts, PTR names and SRV targets are looked up per name. */
const MAX_NAMES = 10;

/** A name's addresses, A and AAAA together (or one family): ok when either has some. */
export async function addressesOf(lookup: Lookup, name: string, family?: 4 | 6): Promise<Answer<string[]>> {
  const types = family === 4 ? ['A'] : family === 6 ? ['AAAA'] : ['A', 'AAAA'];
  const got = await Promise.all(types.map((t) => answer<string[]>(lookup(name, t))));
  const found = got.flatMap((g) => (g.ok ? g.value : []));
  if (found.length || got.every((g) => g.ok || g.none)) return found.length || got.some((g) => g.ok) ? { ok: true, value: found } : { ok: false, none: true, error: 'ENOTFOUND' };
  const failed = got.find((g) => !g.ok && !g.none) as { error: string };
  return { ok: false, none: false, error: failed.error };
}

/** Egress specs → addresses: names (relay servers, discovery) through the resolver. */
export async function resolveEgress(specs: EgressSpec[], lookup: Lookup): Promise<{ egress: Egress[]; notes: string[] }> {
  const egress: Egress[] = [];
  const notes: string[] = [];
  const push = (s: EgressSpec, ip: string) => egress.push({ pool: s.pool, name: s.name, kind: s.kind, ip, ...(s.helo ? { helo: s.helo } : {}) });
  await Promise.all(
    specs.map(async (s) => {
      if (s.host && net.isIP(s.host)) return push(s, s.host);
      let names: string[] = [];
      if (s.host) names = [s.host];
      else if (s.discover?.a) names = [s.discover.a];
      else if (s.discover?.srv) {
        const srv = await answer<{ name: string }[]>(lookup(s.discover.srv, 'SRV'));
        if (!srv.ok) return void notes.push(`${s.pool}/${s.name}: SRV lookup failed (${srv.error}); its servers are not checked`);
        names = [...new Set(srv.value.map((r) => r.name))].slice(0, MAX_NAMES);
      }
      for (const n of names) {
        const a = await addressesOf(lookup, n);
        if (!a.ok) notes.push(`${s.pool}/${s.name}: ${n} does not resolve (${a.error}); not checked`);
        else for (const ip of a.value) push({ ...s, name: s.kind === 'discover' ? n : s.name }, ip);
      }
    }),
  );
  return { egress, notes };
}

function spfEval(r: { status: { result: string; comment?: string }; lookups?: { count: number } }): SpfEval {
  return { result: r.status.result, text: r.status.comment?.replace(/^smtplb: /, ''), lookups: r.lookups?.count };
}

export async function gatherSpf(domain: string, egress: Egress[], lookup: Lookup): Promise<SpfFacts> {
  const resolver = lookup as unknown as DNSResolver;
  const sender = `postmaster@${domain}`;
  const txt = await answer<string[][]>(lookup(domain, 'TXT'));
  const byIp = new Map<string, Egress[]>();
  for (const e of egress) byIp.set(e.ip, [...(byIp.get(e.ip) ?? []), e]);
  const [probe, ...perIp] = await Promise.all([
    spf({ sender, ip: PROBE_IP, helo: domain, mta: 'smtplb', resolver }).then(spfEval),
    ...[...byIp].map(async ([ip, es]) => ({ ip, egress: es, eval: spfEval(await spf({ sender, ip, helo: es.find((e) => e.helo)?.helo ?? domain, mta: 'smtplb', resolver })) })),
  ]);
  return { txt, probe: probe as SpfEval, perIp: perIp as SpfFacts['perIp'] };
}

/** The p= value and the record smtplb's configured private key publishes (see signing/keygen.ts). */
export function publicRecord(privatePem: string, algorithm: string): { p: string; record: string } {
  const pub = createPublicKey(createPrivateKey(privatePem));
  const spki = pub.export({ type: 'spki', format: 'der' });
  const kind = algorithm.startsWith('ed25519') ? 'ed25519' : 'rsa';
  const p = (kind === 'rsa' ? spki : spki.subarray(spki.length - 32)).toString('base64');
  return { p, record: `v=DKIM1; k=${kind}; p=${p}` };
}

export async function gatherDkim(domain: string, dkim: NonNullable<SendingDomain['dkim']>, lookup: Lookup): Promise<DkimFacts> {
  let key: DkimFacts['key'];
  try {
    key = { ok: true, ...publicRecord(fs.readFileSync(dkim.key_file, 'utf8'), dkim.algorithm) };
  } catch (e) {
    key = { ok: false, error: `${dkim.key_file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` };
  }
  const txt = await answer<string[][]>(lookup(`${dkim.selector}._domainkey.${domain}`, 'TXT'));
  return { selector: dkim.selector, algorithm: dkim.algorithm, key, txt };
}

export async function gatherDmarc(domain: string, lookup: Lookup): Promise<DmarcFacts> {
  const txt = await answer<string[][]>(lookup(`_dmarc.${domain}`, 'TXT'));
  let record: DmarcFacts['record'];
  try {
    record = { ok: true, value: await getDmarcRecord(domain, lookup) };
  } catch (e) {
    record = { ok: false, error: (e as NodeJS.ErrnoException).code ?? (e as Error).message };
  }
  return { txt, record };
}

export async function gatherMx(domain: string, lookup: Lookup): Promise<MxFacts> {
  const mx = await answer<{ exchange: string; priority: number }[]>(lookup(domain, 'MX'));
  const addresses: MxFacts['addresses'] = {};
  const hosts = mx.ok ? mx.value.map((m) => m.exchange.toLowerCase()).filter((h) => h && h !== '.').slice(0, MAX_NAMES) : [];
  if (mx.ok && mx.value.length === 0) hosts.push(domain);
  if (!mx.ok && mx.none) hosts.push(domain);
  await Promise.all(hosts.map(async (h) => (addresses[h] = await addressesOf(lookup, h))));
  return { mx, addresses };
}

/** The MTA-STS policy file, fetched over HTTPS from an address the resolver gave (certificate checked against mta-sts.<domain>). */
function fetchPolicyText(domain: string, ip: string, timeoutMs: number): Promise<string> {
  const host = `mta-sts.${domain}`;
  return new Promise((resolve, reject) => {
    const req = https.get({ host: ip, servername: host, headers: { host }, path: '/.well-known/mta-sts.txt', timeout: timeoutMs }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return reject(new Error(`HTTP ${res.statusCode}`));
      }
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
        if (body.length > 65536) req.destroy(new Error('policy larger than 64 KB'));
      });
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

export async function gatherMtaSts(domain: string, lookup: Lookup, timeoutMs: number): Promise<StsFacts> {
  let id: StsFacts['id'];
  try {
    id = { ok: true, value: await resolvePolicy(domain, { resolver: lookup as unknown as DNSResolver }) };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { id: { ok: false, code, error: code ?? (e as Error).message } };
  }
  if (id.value === false) return { id };
  const addrs = await addressesOf(lookup, `mta-sts.${domain}`);
  if (!addrs.ok || !addrs.value.length) return { id, policy: { ok: false, error: `mta-sts.${domain} has no address (${addrs.ok ? 'none' : addrs.error})` } };
  try {
    const policy = parsePolicy(await fetchPolicyText(domain, addrs.value[0], timeoutMs)) as { mode: string; mx?: string[]; maxAge?: number };
    return { id, policy: { ok: true, value: policy } };
  } catch (e) {
    return { id, policy: { ok: false, error: (e as Error).message } };
  }
}

export async function gatherPtr(ip: string, egress: Egress[], helo: string | undefined, lookup: Lookup): Promise<PtrFacts> {
  const family = net.isIPv6(ip) ? 6 : 4;
  const ptr = await answer<string[]>(lookup(reverseName(ip), 'PTR'));
  const names = new Set((ptr.ok ? ptr.value : []).slice(0, MAX_NAMES).map((n) => n.toLowerCase().replace(/\.$/, '')));
  if (helo) names.add(helo.toLowerCase().replace(/\.$/, ''));
  const forward: PtrFacts['forward'] = {};
  await Promise.all([...names].map(async (n) => (forward[n] = await addressesOf(lookup, n, family))));
  return { ip, egress, ...(helo ? { helo } : {}), ptr, forward };
}
