// The identity checks as pure functions: DNS answers (already fetched, as plain data) and the
// configuration in, findings out. Each finding says what is wrong, why it matters to the mail
// smtplb sends, and the record (or config change) that would fix it, so the doctor can be
// trusted by reading its output alone. SPF and DMARC semantics come from mailauth: the SPF
// evaluations in the facts are its results (gather.ts runs it against the resolver), and DMARC
// alignment is its `getAlignment`; the rules for DKIM key records, PTR/HELO and MX are short
// enough to state here.
import { createPublicKey } from 'node:crypto';
import net from 'node:net';
import { getAlignment } from 'mailauth/lib/tools.js';
import { zoneLine } from '../signing/keygen.js';
import type { Answer } from './lookup.js';
import type { Egress } from './inventory.js';
import { reverseName } from './inventory.js';

export type Check = 'spf' | 'dkim' | 'dmarc' | 'mx' | 'mta-sts' | 'ptr';
export const CHECKS: readonly Check[] = ['spf', 'dkim', 'dmarc', 'mx', 'mta-sts', 'ptr'];

export interface Finding {
  /** The sending domain, or for PTR/HELO the HELO name (the address when there is none). */
  subject: string;
  check: Check;
  /** Stable code, e.g. spf-not-authorised, dkim-key-mismatch, ptr-helo-mismatch. */
  code: string;
  severity: 'error' | 'warning';
  problem: string;
  why: string;
  fix: string;
}

export interface CheckResult {
  check: Check;
  /** ok: nothing wrong; note: nothing wrong, something worth knowing; otherwise the worst finding. */
  status: 'ok' | 'note' | 'warning' | 'error';
  summary: string;
  findings: Finding[];
}

function result(check: Check, summary: string, findings: Finding[], note = false): CheckResult {
  const status = findings.some((f) => f.severity === 'error') ? 'error' : findings.length ? 'warning' : note ? 'note' : 'ok';
  return { check, status, summary, findings };
}

/** A zone-file TXT line, split into 255-byte strings when long. */
export function txtLine(name: string, value: string): string {
  return value.length <= 255 ? `${name}. IN TXT "${value}"` : zoneLine(name, value);
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const joinRows = (rows: string[][]) => rows.map((r) => r.join(''));
/** IPv6 addresses compared in full form ("2001:db8::1" = "2001:0db8:0:0:0:0:0:1"). */
const sameIp = (a: string, b: string) => (net.isIPv6(a) && net.isIPv6(b) ? reverseName(a) === reverseName(b) : a === b);
const describeEgress = (e: Egress) => `${e.pool}/${e.name}`;

// ---------------------------------------------------------------- SPF

/** One SPF evaluation by mailauth: its result, the reason it gave, how many DNS lookups it took. */
export interface SpfEval { result: string; text?: string; lookups?: number }

export interface SpfFacts {
  txt: Answer<string[][]>;
  /** Evaluated for an address no one sends from (240.0.0.1): walks the whole record, counts every lookup. */
  probe?: SpfEval;
  /** Evaluated for each egress address that sends the domain's mail. */
  perIp: { ip: string; egress: Egress[]; eval: SpfEval }[];
}

/** The terms of an SPF record after v=spf1. */
function spfTerms(record: string): string[] {
  return record.trim().split(/\s+/).slice(1);
}

function allQualifier(terms: string[]): '+' | '-' | '~' | '?' | 'redirect' | null {
  const all = terms.find((t) => /^[+?~-]?all$/i.test(t));
  if (all) return (/^[+?~-]/.test(all) ? all[0] : '+') as '+' | '-' | '~' | '?';
  return terms.some((t) => /^redirect=/i.test(t)) ? 'redirect' : null;
}

const ipTerm = (ip: string) => (net.isIPv6(ip) ? `ip6:${ip}` : `ip4:${ip}`);

/** `record` with `add` terms put before its `all` (or redirect), ending in -all when it had no all. */
function spfWith(record: string | undefined, add: string[], keep: (t: string) => boolean = () => true): string {
  const terms = record ? spfTerms(record).filter(keep) : [];
  const tailAt = terms.findIndex((t) => /^[+?~-]?all$/i.test(t) || /^redirect=/i.test(t));
  const head = tailAt < 0 ? terms : terms.slice(0, tailAt);
  let tail = tailAt < 0 ? [] : terms.slice(tailAt);
  if (!tail.some((t) => /^[+?~-]?all$/i.test(t) || /^redirect=/i.test(t))) tail = [...tail, '-all'];
  tail = tail.map((t) => (/^\+?all$/i.test(t) ? '-all' : t));
  const fresh = add.filter((t) => !head.some((h) => h.toLowerCase() === t.toLowerCase()));
  return ['v=spf1', ...head, ...fresh, ...tail].join(' ');
}

export function checkSpf(domain: string, facts: SpfFacts, egress: Egress[]): CheckResult {
  const f: Finding[] = [];
  const add = (code: string, severity: Finding['severity'], problem: string, why: string, fix: string) => f.push({ subject: domain, check: 'spf', code, severity, problem, why, fix });
  const ips = [...new Set(egress.map((e) => e.ip))];
  const wanted = ips.length ? ips.map(ipTerm) : ['ip4:ADDRESS-YOU-SEND-FROM'];
  if (!facts.txt.ok && !facts.txt.none) {
    add('spf-lookup-failed', 'warning', `the TXT records of ${domain} could not be read (${facts.txt.error})`, 'the SPF record could not be checked', 'check that the resolver answers for the domain, then run smtplb doctor again');
    return result('spf', 'lookup failed', f);
  }
  const records = facts.txt.ok ? joinRows(facts.txt.value).filter((r) => /^v=spf1(\s|$)/i.test(r.trim())) : [];
  if (records.length === 0) {
    add('spf-missing', 'error', `${domain} publishes no SPF record`, `receivers get SPF "none" for mail from ${domain}: nothing says which servers may send it, DMARC cannot pass through SPF, and Gmail and Yahoo require SPF or DKIM from every sender`, txtLine(domain, spfWith(undefined, wanted)));
    return result('spf', 'no record', f);
  }
  if (records.length > 1) {
    add('spf-multiple', 'error', `${domain} publishes ${records.length} SPF records`, 'RFC 7208 4.5: with more than one v=spf1 record the result is permerror, so SPF fails for every address', `one record only, merging them: ${txtLine(domain, spfWith(records[0], [...records.slice(1).flatMap(spfTerms).filter((t) => !/^[+?~-]?all$/i.test(t)), ...wanted]))}`);
    return result('spf', 'several records', f);
  }
  const record = records[0].trim();
  const terms = spfTerms(record);
  const probe = facts.probe;
  const summary: string[] = [];
  let broken = false;
  if (probe?.result === 'permerror') {
    broken = true;
    if (/too many dns requests/i.test(probe.text ?? '')) {
      add('spf-too-many-lookups', 'error', `the SPF record of ${domain} needs more than 10 DNS lookups (include, a, mx, ptr, exists, redirect, counted through the includes)`, 'RFC 7208 4.6.4: past 10 lookups receivers stop with permerror, and SPF fails for every address listed after that point; many receivers evaluate the whole record and fail it outright', `list the sending addresses directly and keep only the includes you need, at most 10 lookups in all, e.g. ${txtLine(domain, spfWith(record, wanted, (t) => /^[+?~-]?(ip4|ip6|all)\b/i.test(t)))}`);
    } else if (/void/i.test(probe.text ?? '')) {
      add('spf-too-many-void', 'error', `the SPF record of ${domain} makes more than 2 lookups that find nothing`, 'RFC 7208 4.6.4: a third empty answer is a permerror, so SPF fails', `remove the mechanisms that point at names without records: ${txtLine(domain, spfWith(record, wanted, (t) => /^[+?~-]?(ip4|ip6|all|include)\b/i.test(t)))}`);
    } else {
      add('spf-invalid', 'error', `the SPF record of ${domain} does not parse: ${probe.text ?? 'permerror'}`, 'receivers return permerror, so SPF fails for every address', txtLine(domain, spfWith(record, wanted, (t) => /^[+?~-]?(ip4|ip6|a|mx|include|exists|all)\b|^redirect=/i.test(t))));
    }
  } else if (probe?.result === 'temperror') {
    add('spf-lookup-failed', 'warning', `the SPF record of ${domain} could not be evaluated: ${probe.text ?? 'DNS error'}`, 'receivers may get the same temporary error and defer or junk the mail', 'check the names the record includes resolve, then run smtplb doctor again');
    broken = true;
  } else if (probe?.result === 'pass') {
    add('spf-permissive', 'error', `the SPF record of ${domain} authorises any address (it passes 240.0.0.1, an address no one sends from)`, `anyone can send mail as ${domain} and pass SPF: receivers treat such records as a spam signal`, txtLine(domain, spfWith(record, wanted, (t) => !/^\+?all$/i.test(t) && !/^\+?ip[46]:(0\.0\.0\.0|::)\/0$/i.test(t))));
    broken = true;
  } else if (probe?.lookups !== undefined) summary.push(`${probe.lookups}/10 lookups`);

  const q = allQualifier(terms);
  if (q === '-') summary.push('-all');
  else if (q === '~') summary.push('~all (softfail: unlisted addresses are marked, not refused)');
  else if (q === 'redirect') summary.push('all from its redirect');
  else if (q !== '+') add('spf-no-all', 'warning', `the SPF record of ${domain} ${q === '?' ? 'ends in ?all' : 'has no all term'}: addresses it does not list get "neutral"`, 'neutral is the same as no SPF for receivers: the record does not stop anyone sending as the domain', txtLine(domain, spfWith(record, [], (t) => !/^[+?~-]?all$/i.test(t))));

  const missing: { ip: string; egress: Egress[]; result: string }[] = [];
  const passed: string[] = [];
  for (const p of facts.perIp) {
    if (p.eval.result === 'pass') passed.push(p.ip);
    else if ((p.eval.result === 'permerror' || p.eval.result === 'temperror') && broken) continue; // said above, for the whole record
    else if (p.eval.result === 'temperror') add('spf-lookup-failed', 'warning', `SPF for ${p.ip} could not be evaluated: ${p.eval.text ?? 'DNS error'}`, 'receivers may get the same temporary error', 'check the names the record includes resolve');
    else if (p.eval.result === 'permerror') add('spf-invalid', 'error', `the SPF record of ${domain} fails for ${p.ip}: ${p.eval.text ?? 'permerror'}`, 'receivers return permerror, so SPF fails', txtLine(domain, spfWith(record, wanted)));
    else missing.push({ ip: p.ip, egress: p.egress, result: p.eval.result });
  }
  if (missing.length) {
    const who = missing.map((m) => `${m.ip} (${m.egress.map(describeEgress).join(', ')}: ${m.result})`).join(', ');
    add('spf-not-authorised', 'error', `the SPF record of ${domain} does not authorise ${missing.length === 1 ? 'egress address' : 'egress addresses'} ${who}`, `mail smtplb sends as ${domain} from ${missing.length === 1 ? 'this address' : 'these addresses'} gets SPF ${missing[0].result}${q === '-' ? ', which many receivers refuse outright' : ''}, and DMARC can then pass only through DKIM`, txtLine(domain, spfWith(record, missing.map((m) => ipTerm(m.ip)))));
  }
  if (facts.perIp.length) summary.unshift(`pass for ${plural(passed.length, 'address', 'addresses')} of ${facts.perIp.length}`);
  else summary.unshift('no public egress address to evaluate');
  return result('spf', summary.join('; '), f, q === '~');
}

// ---------------------------------------------------------------- DKIM

export interface DkimFacts {
  selector: string;
  /** rsa-sha256 | ed25519-sha256, as configured. */
  algorithm: string;
  /** The public key of the configured private key: its p= value and the record to publish; or why it could not be read. */
  key: { ok: true; p: string; record: string } | { ok: false; error: string };
  txt: Answer<string[][]>;
}

/** DKIM key record tags (RFC 6376 3.6.1): "v=DKIM1; k=rsa; p=…" → { v, k, p }. */
export function parseTags(record: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const part of record.split(';')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    tags.set(part.slice(0, i).trim().toLowerCase(), part.slice(i + 1).replace(/\s+/g, ''));
  }
  return tags;
}

/** The published p= as the bytes smtplb's key would publish (SPKI DER for RSA, the raw 32 bytes for Ed25519), or null when it is not a key. */
function publishedKey(p: string, kind: 'rsa' | 'ed25519'): Buffer | null {
  const raw = Buffer.from(p, 'base64');
  if (kind === 'ed25519') return raw.length === 32 ? raw : null;
  for (const type of ['spki', 'pkcs1'] as const) {
    try {
      return createPublicKey({ key: raw, format: 'der', type }).export({ type: 'spki', format: 'der' });
    } catch {
      /* try the next form */
    }
  }
  return null;
}

export function checkDkim(domain: string, facts: DkimFacts): CheckResult {
  const f: Finding[] = [];
  const name = `${facts.selector}._domainkey.${domain}`;
  const add = (code: string, severity: Finding['severity'], problem: string, why: string, fix: string) => f.push({ subject: domain, check: 'dkim', code, severity, problem, why, fix });
  if (!facts.key.ok) {
    add('dkim-key-unreadable', 'error', `the configured DKIM key for ${domain} cannot be read: ${facts.key.error}`, 'smtplb cannot sign, nor can the published key be compared', 'fix dkim.domains.key_file (smtplb dkim keygen makes a key and prints its record)');
    return result('dkim', 'key unreadable', f);
  }
  const fix = txtLine(name, facts.key.record);
  const kind = facts.algorithm.startsWith('ed25519') ? 'ed25519' : 'rsa';
  if (!facts.txt.ok && !facts.txt.none) {
    add('dkim-lookup-failed', 'warning', `the TXT record ${name} could not be read (${facts.txt.error})`, 'the DKIM key could not be checked', 'check that the resolver answers for the domain');
    return result('dkim', 'lookup failed', f);
  }
  const rows = facts.txt.ok ? joinRows(facts.txt.value).filter((r) => r.trim()) : [];
  if (rows.length === 0) {
    add('dkim-missing', 'error', `no DKIM key is published at ${name}`, `receivers cannot verify smtplb's signatures for ${domain} (dkim=permerror): DMARC can pass only through SPF, which forwarding breaks`, fix);
    return result('dkim', 'not published', f);
  }
  if (rows.length > 1) {
    add('dkim-multiple', 'error', `${name} has ${rows.length} TXT records`, 'verifiers take one of them, not necessarily the right one, so signatures fail at random', `keep one: ${fix}`);
    return result('dkim', 'several records', f);
  }
  const tags = parseTags(rows[0]);
  const v = tags.get('v');
  const k = (tags.get('k') ?? 'rsa').toLowerCase();
  const p = tags.get('p');
  const h = tags.get('h');
  if ((v !== undefined && v !== 'DKIM1') || p === undefined) {
    add('dkim-invalid', 'error', `the record at ${name} is not a DKIM key record (${v !== undefined && v !== 'DKIM1' ? `v=${v}` : 'no p= tag'})`, 'verifiers ignore it: every signature fails', fix);
  } else if (p === '') {
    add('dkim-revoked', 'error', `the key at ${name} is revoked (empty p=)`, 'every signature smtplb makes with this selector fails', fix);
  } else if (k !== kind) {
    add('dkim-algorithm', 'error', `${name} publishes a k=${k} key, but smtplb signs with ${facts.algorithm}`, 'every signature fails', fix);
  } else if (h && !h.toLowerCase().split(':').includes('sha256')) {
    add('dkim-invalid', 'error', `${name} allows only h=${h}, but smtplb signs with sha256`, 'every signature fails', fix);
  } else {
    const got = publishedKey(p, kind);
    const want = Buffer.from(facts.key.p, 'base64');
    if (!got) add('dkim-invalid', 'error', `p= at ${name} is not a valid ${kind} public key`, 'every signature fails', fix);
    else if (!got.equals(want)) add('dkim-key-mismatch', 'error', `the key published at ${name} is not the public half of the configured ${facts.algorithm} key`, `every message smtplb signs for ${domain} fails DKIM (dkim=fail): DMARC can pass only through SPF, which forwarding breaks`, fix);
  }
  const testing = (tags.get('t') ?? '').split(':').includes('y');
  return result('dkim', `${name} matches the configured ${facts.algorithm} key${testing ? ' (t=y: receivers treat failures as testing)' : ''}`, f, testing);
}

// ---------------------------------------------------------------- DMARC

/** mailauth's parsed DMARC record (getDmarcRecord): tags as keys, plus rr and isOrgRecord. */
export type DmarcRecord = Record<string, string | number | boolean> & { rr: string; isOrgRecord: boolean };

export interface DmarcFacts {
  /** TXT at _dmarc.<domain> itself, to tell "none" from "several". */
  txt: Answer<string[][]>;
  /** The record that applies (the domain's, else its organisational domain's), false when there is none. */
  record: { ok: true; value: DmarcRecord | false } | { ok: false; error: string };
}

const POLICIES = ['none', 'quarantine', 'reject'];

export function checkDmarc(domain: string, facts: DmarcFacts, aligned: { dkim: boolean; spf: boolean | null; dkimConfigured: boolean }): CheckResult {
  const f: Finding[] = [];
  const name = `_dmarc.${domain}`;
  const add = (code: string, severity: Finding['severity'], problem: string, why: string, fix: string) => f.push({ subject: domain, check: 'dmarc', code, severity, problem, why, fix });
  const starter = txtLine(name, `v=DMARC1; p=none; rua=mailto:postmaster@${domain}`);
  if (!facts.txt.ok && !facts.txt.none) {
    add('dmarc-lookup-failed', 'warning', `the TXT record ${name} could not be read (${facts.txt.error})`, 'the DMARC policy could not be checked', 'check that the resolver answers for the domain');
    return result('dmarc', 'lookup failed', f);
  }
  const own = facts.txt.ok ? joinRows(facts.txt.value).filter((r) => /^v=DMARC1\b/i.test(r.trim())) : [];
  if (own.length > 1) {
    add('dmarc-multiple', 'error', `${name} has ${own.length} DMARC records`, 'RFC 7489 6.6.3: with more than one record receivers apply no policy at all', `keep one: ${txtLine(name, own[0].trim())}`);
    return result('dmarc', 'several records', f);
  }
  if (!facts.record.ok) {
    add('dmarc-lookup-failed', 'warning', `the DMARC record of ${domain} could not be read (${facts.record.error})`, 'the DMARC policy could not be checked', 'check that the resolver answers for the domain');
    return result('dmarc', 'lookup failed', f);
  }
  const rec = facts.record.value;
  if (!rec) {
    add('dmarc-missing', 'error', `${domain} publishes no DMARC record (none at ${name}${domain.split('.').length > 2 ? ' nor at its organisational domain' : ''})`, 'Gmail and Yahoo require a DMARC record from bulk senders, receivers apply their own guess of a policy, and no aggregate reports tell you who sends as the domain', `${starter} (then move to p=quarantine or p=reject once the reports show every source aligned)`);
    return result('dmarc', 'no record', f);
  }
  // mailauth trims each tag but not its value: "p= reject" is p=" reject", valid to receivers (RFC 7489 6.4 allows spaces around "=").
  const tag = (k: string) => (rec[k] === undefined ? undefined : String(rec[k]).trim().toLowerCase());
  const p = tag('p') ?? '';
  const sp = tag('sp');
  if (!POLICIES.includes(p) || (sp !== undefined && !POLICIES.includes(sp))) {
    add('dmarc-invalid', 'error', `the DMARC record of ${domain} has ${p ? `an invalid policy p=${p}` : 'no p= policy'}${sp !== undefined && !POLICIES.includes(sp) ? ` and an invalid sp=${sp}` : ''}: "${rec.rr}"`, 'RFC 7489 6.6.3: receivers discard a record without a valid policy, as if there were none', starter);
    return result('dmarc', 'invalid record', f);
  }
  const policy = rec.isOrgRecord && sp ? sp : p;
  // mailauth's alignment rule (organisational domains from the public suffix list; adkim/aspf=s strict).
  const dkimAligned = !!getAlignment(domain, aligned.dkim ? [{ domain }] : [], tag('adkim') === 's');
  const spfAligned = !!getAlignment(domain, aligned.spf ? [{ domain }] : [], tag('aspf') === 's');
  const by = [dkimAligned ? 'DKIM' : '', spfAligned ? 'SPF' : ''].filter(Boolean);
  const pct = typeof rec.pct === 'number' && rec.pct < 100 ? `, pct=${rec.pct}` : '';
  const where = rec.isOrgRecord ? ' (from the organisational domain\'s record)' : '';
  if (by.length === 0 && aligned.spf !== null) {
    const dkimWhy = aligned.dkimConfigured ? `its DKIM key does not verify (see dkim)` : `smtplb has no DKIM key for ${domain} (dkim.domains)`;
    add('dmarc-unaligned', 'error', `mail smtplb sends as ${domain} fails DMARC: ${dkimWhy}, and SPF does not pass for every egress address (see spf)`, `with p=${policy}${pct} receivers ${policy === 'reject' ? 'refuse' : policy === 'quarantine' ? 'junk' : 'report'} that mail`, aligned.dkimConfigured ? 'publish the DKIM record shown under dkim, or authorise every egress address in SPF' : `add a key: smtplb dkim keygen --domain ${domain} --selector s1 --out ${domain}.pem, put it under dkim.domains.${domain}, and publish the record it prints`);
  }
  const summary = `p=${policy}${policy === 'none' ? ' (monitoring only: receivers take no action)' : ''}${pct}${where}; ${by.length ? `aligned through ${by.join(' and ')}` : aligned.spf === null ? 'alignment unknown (no DKIM key and no public egress address)' : 'not aligned'}`;
  return result('dmarc', summary, f, policy === 'none' || aligned.spf === null);
}

// ---------------------------------------------------------------- MX

export interface MxFacts {
  mx: Answer<{ exchange: string; priority: number }[]>;
  /** Addresses (A and AAAA) of each MX host, or of the domain itself when it has no MX. */
  addresses: Record<string, Answer<string[]>>;
}

export function checkMx(domain: string, facts: MxFacts): CheckResult {
  const f: Finding[] = [];
  const add = (code: string, problem: string, why: string, fix: string) => f.push({ subject: domain, check: 'mx', code, severity: 'warning', problem, why, fix });
  const fix = `${domain}. IN MX 10 mail.${domain}.`;
  if (!facts.mx.ok && !facts.mx.none) {
    add('mx-lookup-failed', `the MX records of ${domain} could not be read (${facts.mx.error})`, 'whether bounces and replies can reach the domain is unknown', 'check that the resolver answers for the domain');
    return result('mx', 'lookup failed', f);
  }
  const mx = facts.mx.ok ? [...facts.mx.value].sort((a, b) => a.priority - b.priority) : [];
  if (mx.length === 1 && (mx[0].exchange === '' || mx[0].exchange === '.')) {
    add('mx-null', `${domain} publishes a null MX (RFC 7505): it takes no mail`, 'replies and bounces to the addresses smtplb sends from are lost, and receivers may refuse mail whose envelope domain takes none (RFC 7505 4.2)', fix);
    return result('mx', 'null MX', f);
  }
  if (mx.length === 0) {
    const a = facts.addresses[domain];
    if (a?.ok && a.value.length) return result('mx', `no MX; replies go to the domain's own address (implicit MX: ${a.value.join(', ')})`, f, true);
    add('mx-missing', `${domain} has no MX record (and no address)`, 'replies and bounces to the addresses smtplb sends from have nowhere to go, and many receivers refuse mail from an envelope domain that cannot receive mail', fix);
    return result('mx', 'no MX', f);
  }
  const dead = mx.filter((m) => {
    const a = facts.addresses[m.exchange.toLowerCase()];
    return a && !(a.ok && a.value.length) && (a.ok || a.none);
  });
  if (dead.length === mx.length) add('mx-no-address', `no MX host of ${domain} has an address: ${dead.map((m) => m.exchange).join(', ')}`, 'replies and bounces cannot be delivered', `${dead[0].exchange}. IN A ADDRESS-OF-THE-MAIL-SERVER`);
  else if (dead.length) add('mx-no-address', `MX host ${dead.map((m) => m.exchange).join(', ')} of ${domain} has no address`, 'senders try it first and wait, or skip it', `${dead[0].exchange}. IN A ADDRESS-OF-THE-MAIL-SERVER, or remove the MX record`);
  return result('mx', mx.map((m) => `${m.exchange} (${m.priority})`).join(', '), f);
}

// ---------------------------------------------------------------- MTA-STS

export interface StsFacts {
  /** The id in _mta-sts.<domain>, false when none is published. */
  id: { ok: true; value: string | false } | { ok: false; code?: string; error: string };
  /** The policy file, fetched only when an id is published. */
  policy?: { ok: true; value: { mode: string; mx?: string[]; maxAge?: number } } | { ok: false; error: string };
}

export function checkMtaSts(domain: string, facts: StsFacts, mxHosts: string[]): CheckResult {
  const f: Finding[] = [];
  const url = `https://mta-sts.${domain}/.well-known/mta-sts.txt`;
  const add = (code: string, problem: string, why: string, fix: string) => f.push({ subject: domain, check: 'mta-sts', code, severity: 'warning', problem, why, fix });
  if (!facts.id.ok) {
    if (facts.id.code === 'multi_sts_records') add('sts-multiple', `_mta-sts.${domain} has several v=STSv1 records`, 'RFC 8461 3.1: senders then act as if there were no policy', `keep one: ${txtLine(`_mta-sts.${domain}`, 'v=STSv1; id=20260101T000000')}`);
    else add('sts-lookup-failed', `_mta-sts.${domain} could not be read (${facts.id.error})`, 'the MTA-STS policy could not be checked', 'check that the resolver answers for the domain');
    return result('mta-sts', 'lookup failed', f);
  }
  if (facts.id.value === false) return result('mta-sts', 'not published (optional: it protects mail to the domain from TLS downgrade)', f, true);
  const id = facts.id.value;
  if (!facts.policy || !facts.policy.ok) {
    add('sts-policy-unavailable', `_mta-sts.${domain} announces policy ${id}, but ${url} cannot be fetched or parsed: ${facts.policy?.ok === false ? facts.policy.error : 'not fetched'}`, 'senders that see the TXT record and no policy fall back to no policy, and the announcement serves nothing', `serve ${url} over HTTPS with a valid certificate: "version: STSv1\\nmode: testing\\nmx: ${mxHosts[0] ?? `mail.${domain}`}\\nmax_age: 86400"`);
    return result('mta-sts', `id ${id}, policy unavailable`, f);
  }
  const policy = facts.policy.value;
  if (policy.mode !== 'none') {
    const uncovered = mxHosts.filter((h) => !(policy.mx ?? []).some((p) => (p.startsWith('*.') ? h.toLowerCase().endsWith(p.slice(1).toLowerCase()) : p.toLowerCase() === h.toLowerCase())));
    if (uncovered.length) add('sts-mx-not-covered', `the MTA-STS policy of ${domain} (mode ${policy.mode}) does not list MX host ${uncovered.join(', ')}`, policy.mode === 'enforce' ? 'senders that enforce MTA-STS refuse to deliver replies and bounces to those hosts' : 'senders report failures to those hosts (TLS-RPT)', `add to ${url}: ${uncovered.map((h) => `mx: ${h}`).join(', ')}`);
  }
  return result('mta-sts', `mode ${policy.mode}, id ${id}${policy.mx?.length ? `, mx ${policy.mx.join(' ')}` : ''}`, f);
}

// ---------------------------------------------------------------- PTR / HELO

export interface PtrFacts {
  ip: string;
  egress: Egress[];
  /** The EHLO name these egress identities use; unknown for relay servers. */
  helo?: string;
  ptr: Answer<string[]>;
  /** Addresses of each PTR name, and of the HELO name. */
  forward: Record<string, Answer<string[]>>;
}

export function checkPtr(subject: string, facts: PtrFacts): CheckResult {
  const f: Finding[] = [];
  const { ip, helo } = facts;
  const rev = reverseName(ip);
  const who = `${facts.egress.map(describeEgress).join(', ')} (${ip})`;
  const addrType = net.isIPv6(ip) ? 'AAAA' : 'A';
  const add = (code: string, severity: Finding['severity'], problem: string, why: string, fix: string) => f.push({ subject, check: 'ptr', code, severity, problem, why, fix });
  const resolvesTo = (name: string) => {
    const a = facts.forward[name.toLowerCase()];
    return !!a?.ok && a.value.some((x) => sameIp(x, ip));
  };
  const wantName = helo ?? 'NAME-OF-THIS-SERVER';
  const heloFix = helo && !resolvesTo(helo) ? ` and ${helo}. IN ${addrType} ${ip}` : '';
  if (!facts.ptr.ok && !facts.ptr.none) {
    add('ptr-lookup-failed', 'warning', `the PTR record of ${ip} could not be read (${facts.ptr.error})`, 'reverse DNS could not be checked', 'check that the resolver answers for the reverse zone');
    return result('ptr', 'lookup failed', f);
  }
  const names = facts.ptr.ok ? facts.ptr.value.map((n) => n.toLowerCase().replace(/\.$/, '')) : [];
  if (names.length === 0) {
    add('ptr-missing', 'error', `${who} has no PTR record`, 'Gmail, Microsoft and most large receivers refuse or junk mail from an address without reverse DNS', `${rev}. IN PTR ${wantName}.${heloFix} (the PTR is set by whoever holds the address block, often in the provider's console)`);
    return result('ptr', 'no PTR', f);
  }
  const confirmed = names.filter(resolvesTo);
  if (helo) {
    const h = helo.toLowerCase().replace(/\.$/, '');
    if (!names.includes(h)) {
      add('ptr-helo-mismatch', 'error', `${who} says EHLO ${helo}, but the PTR of ${ip} is ${names.join(', ')}`, 'receivers compare the EHLO name with reverse DNS: a mismatch is a common spam signal, and some refuse the connection', `${rev}. IN PTR ${h}.${heloFix}${confirmed.length ? `, or set helo: ${confirmed[0]} on the source` : ''}`);
      return result('ptr', `PTR ${names.join(', ')}`, f);
    }
    if (!resolvesTo(h)) {
      add('ptr-not-fcrdns', 'error', `the PTR of ${ip} is ${h}, but ${h} does not resolve back to ${ip}`, 'forward-confirmed reverse DNS fails: receivers treat the PTR as forged', `${h}. IN ${addrType} ${ip}`);
      return result('ptr', `PTR ${h}`, f);
    }
    return result('ptr', `PTR ${h} = EHLO, resolves back to ${ip}`, f);
  }
  if (!confirmed.length) {
    add('ptr-not-fcrdns', 'error', `the PTR of ${ip} is ${names.join(', ')}, which does not resolve back to ${ip}`, 'forward-confirmed reverse DNS fails: receivers treat the PTR as forged', `${names[0]}. IN ${addrType} ${ip}`);
    return result('ptr', `PTR ${names.join(', ')}`, f);
  }
  return result('ptr', `PTR ${confirmed[0]}, resolves back to ${ip}`, f);
}
