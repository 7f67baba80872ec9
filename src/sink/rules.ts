// The settings and rules of `smtplb sink`: read from a YAML file (`rules:` list) and from
// repeated `--rule 'key=value,key=value'` flags, checked, and turned into matchers. Every
// problem names the rule and the key ("--rule 2: data_delay: not a valid duration ...",
// "sink.yaml:7:5: rules[1]: close: ..."), so the CLI can print it without a stack trace.
import fs from 'node:fs';
import { isMap, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import { parseAddress, parseDuration, parseSize, type HostPort } from '../config/units.js';
import { PRESETS, presetNames, type Reply } from './presets.js';

export type { Reply } from './presets.js';

export class SinkConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SinkConfigError';
  }
}

export type CloseWhen = 'mid-data' | 'after-rcpt' | 'after-data';

export interface SinkRule {
  /** How the rule is named in errors and logs: `--rule 2` or `rules[1]`. */
  name: string;
  rcpt?: RegExp;
  domain?: RegExp;
  /** Reply to RCPT for a matching recipient (from `reply:` or `preset:`). */
  reply?: Reply;
  /** Reply to the final dot (from `data_reply:` or `data_preset:`). */
  dataReply?: Reply;
  /** Wait before answering the final dot (`data_delay:`, or its other name `delay:`). */
  dataDelayMs?: number;
  close?: CloseWhen;
  /** With `close: mid-data`: close once this many body bytes have arrived (default 1). */
  closeAfterBytes?: number;
  /** Answer the final dot with one line of this many bytes. */
  longReply?: number;
  /** Answer the final dot with this many lines. */
  multilineReply?: number;
}

export interface SinkSettings {
  listen?: HostPort;
  stats?: HostPort;
  hostname: string;
  /** A replacement greeting ("554 5.7.1 No service"); 220 when absent. */
  greeting?: Reply;
  greetingDelayMs: number;
  /** SIZE advertised in EHLO and enforced (552 5.3.4). */
  size: number;
  maxRecipients: number;
  /** Distinct recipient addresses counted one by one in the stats; more only add to totals. */
  maxTrackedRecipients: number;
  /** Idle time before `421 4.4.2` and close. */
  timeoutMs: number;
  verbose: boolean;
  rules: SinkRule[];
}

export const DEFAULT_SETTINGS: Omit<SinkSettings, 'rules'> = {
  hostname: 'smtplb-sink',
  greetingDelayMs: 0,
  size: 50 * 1024 * 1024,
  maxRecipients: 1000,
  maxTrackedRecipients: 1_000_000,
  timeoutMs: 300_000,
  verbose: false,
};

const RULE_KEYS = ['rcpt', 'domain', 'reply', 'preset', 'data_reply', 'data_preset', 'data_delay', 'delay', 'close', 'close_after', 'long_reply', 'multiline_reply'] as const;
const TOP_KEYS = ['listen', 'stats', 'hostname', 'greeting', 'greeting_delay', 'size', 'max_recipients', 'max_tracked_recipients', 'timeout', 'verbose', 'rules'] as const;
const CLOSE_VALUES: CloseWhen[] = ['mid-data', 'after-rcpt', 'after-data'];
const MAX_LONG_REPLY = 64 * 1024 * 1024;
const MAX_MULTILINE = 1_000_000;

/** `*` any run of characters, `?` one character; case-insensitive, whole string. */
export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}

/** "550 5.1.1 User unknown" (lines separated by \n may repeat "550-" / "550 ") → Reply. */
export function parseReply(text: string, allowed: (code: number) => boolean, expect: string): Reply {
  const rawLines = text.replace(/\r/g, '').split('\n').filter((l, i, a) => l !== '' || (i > 0 && i < a.length - 1));
  const m = /^([2-5]\d\d)(?:[ -](.*))?$/.exec(rawLines[0] ?? '');
  if (!m) throw new Error(`must start with a three-digit reply code and a space, e.g. "550 5.1.1 User unknown" (got ${JSON.stringify(text)})`);
  const code = Number(m[1]);
  if (!allowed(code)) throw new Error(`reply code ${code} is not allowed here: ${expect}`);
  const lines = [m[2] ?? ''];
  for (const l of rawLines.slice(1)) {
    const again = /^(\d{3})[ -](.*)$/.exec(l);
    lines.push(again && Number(again[1]) === code ? again[2] : l);
  }
  return { code, lines };
}

const notThree = (c: number) => c < 300 || c >= 400;

type Raw = Record<string, unknown>;

function str(v: unknown, key: string): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new Error(`${key}: expected a text value (got ${JSON.stringify(v)})`);
}

function positiveInt(v: unknown, key: string, max: number): number {
  const n = typeof v === 'number' ? v : /^\s*\d+\s*$/.test(String(v)) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`${key}: expected a whole number from 1 to ${max} (got ${JSON.stringify(v)})`);
  return n;
}

function withKey<T>(key: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const msg = (e as Error).message;
    throw new Error(msg.startsWith(`${key}:`) ? msg : `${key}: ${msg}`);
  }
}

/** One rule from its raw key/values (YAML map or the compact CLI form). Throws "key: problem". */
export function buildRule(raw: Raw, name: string): SinkRule {
  for (const k of Object.keys(raw)) {
    if (!(RULE_KEYS as readonly string[]).includes(k)) throw new Error(`${k}: unknown key (rule keys: ${RULE_KEYS.join(', ')})`);
  }
  const pairs: [string, string][] = [['reply', 'preset'], ['data_reply', 'data_preset'], ['data_delay', 'delay'], ['long_reply', 'multiline_reply']];
  for (const [a, b] of pairs) if (raw[a] !== undefined && raw[b] !== undefined) throw new Error(`${b}: cannot be used with ${a} in the same rule`);
  const rule: SinkRule = { name };
  if (raw.rcpt !== undefined) {
    const g = withKey('rcpt', () => str(raw.rcpt, 'rcpt')).toLowerCase();
    if (!g) throw new Error('rcpt: empty pattern');
    // A pattern without "@" is matched against the local part only.
    rule.rcpt = globToRegExp(g.includes('@') ? g : `${g}@*`);
  }
  if (raw.domain !== undefined) {
    const g = withKey('domain', () => str(raw.domain, 'domain')).toLowerCase();
    if (!g || g.includes('@')) throw new Error(`domain: expected a domain or a glob such as "*.example.test" (got ${JSON.stringify(raw.domain)})`);
    rule.domain = globToRegExp(g);
  }
  const presetOf = (key: string): Reply => {
    const n = str(raw[key], key);
    const p = PRESETS[n];
    if (!p) throw new Error(`${key}: unknown preset "${n}" (presets: ${presetNames().join(', ')})`);
    return p.reply;
  };
  if (raw.reply !== undefined) rule.reply = withKey('reply', () => parseReply(str(raw.reply, 'reply'), notThree, 'RCPT is answered with 2xx, 4xx or 5xx'));
  if (raw.preset !== undefined) rule.reply = presetOf('preset');
  if (raw.data_reply !== undefined) rule.dataReply = withKey('data_reply', () => parseReply(str(raw.data_reply, 'data_reply'), notThree, 'the final dot is answered with 2xx, 4xx or 5xx'));
  if (raw.data_preset !== undefined) rule.dataReply = presetOf('data_preset');
  for (const key of ['data_delay', 'delay'] as const) {
    if (raw[key] !== undefined) rule.dataDelayMs = withKey(key, () => parseDuration(typeof raw[key] === 'number' ? (raw[key] as number) : str(raw[key], key)));
  }
  if (raw.close !== undefined) {
    const c = str(raw.close, 'close');
    if (!(CLOSE_VALUES as string[]).includes(c)) throw new Error(`close: expected one of ${CLOSE_VALUES.join(', ')} (got ${JSON.stringify(c)})`);
    rule.close = c as CloseWhen;
  }
  if (raw.close_after !== undefined) {
    if (rule.close !== 'mid-data') throw new Error('close_after: only with close: mid-data');
    rule.closeAfterBytes = withKey('close_after', () => parseSize(typeof raw.close_after === 'number' ? raw.close_after : str(raw.close_after, 'close_after')));
    if (rule.closeAfterBytes < 1) throw new Error('close_after: must be at least 1 byte');
  }
  if (raw.long_reply !== undefined) {
    const n = withKey('long_reply', () => parseSize(typeof raw.long_reply === 'number' ? raw.long_reply : str(raw.long_reply, 'long_reply')));
    if (n < 16 || n > MAX_LONG_REPLY) throw new Error(`long_reply: expected a size from 16 bytes to 64MB (got ${JSON.stringify(raw.long_reply)})`);
    rule.longReply = n;
  }
  if (raw.multiline_reply !== undefined) rule.multilineReply = positiveInt(raw.multiline_reply, 'multiline_reply', MAX_MULTILINE);
  if (rule.close === 'after-rcpt' && rule.reply) throw new Error('close: after-rcpt sends no reply to RCPT, so it cannot be used with reply/preset');
  if (rule.close && (rule.dataReply || rule.longReply || rule.multilineReply)) throw new Error(`close: ${rule.close} sends no reply to the final dot, so it cannot be used with data_reply, data_preset, long_reply or multiline_reply`);
  return rule;
}

/** Split `rcpt=bad*@*,reply=550 5.1.1 User unknown, sorry` on the commas that start a `key=`. */
export function parseCompactRule(text: string): Raw {
  const raw: Raw = {};
  const parts = text.split(/,(?=\s*[a-z_]+\s*=)/);
  for (const part of parts) {
    const m = /^\s*([a-z_]+)\s*=(.*)$/s.exec(part);
    if (!m) throw new Error(`expected key=value pairs separated by commas (got ${JSON.stringify(part.trim())})`);
    let value = m[2].trim();
    const q = /^(["'])(.*)\1$/s.exec(value);
    if (q) value = q[2];
    if (m[1] in raw) throw new Error(`${m[1]}: given twice`);
    raw[m[1]] = value;
  }
  return raw;
}

export function ruleFromFlag(text: string, index: number): SinkRule {
  const name = `--rule ${index} (${JSON.stringify(text)})`;
  try {
    return buildRule(parseCompactRule(text), `--rule ${index}`);
  } catch (e) {
    throw new SinkConfigError(`${name}: ${(e as Error).message}`);
  }
}

function settingsFromRaw(raw: Raw, settings: SinkSettings, where: (key: string, index?: number) => string): void {
  const fail = (key: string, e: unknown, index?: number): never => {
    const msg = (e as Error).message;
    throw new SinkConfigError(`${where(key, index)}: ${msg.startsWith(`${key}:`) || index !== undefined ? msg : `${key}: ${msg}`}`);
  };
  for (const k of Object.keys(raw)) if (!(TOP_KEYS as readonly string[]).includes(k)) fail(k, new Error(`unknown key (known: ${TOP_KEYS.join(', ')})`));
  const get = <T>(key: string, fn: (v: unknown) => T): T | undefined => {
    if (raw[key] === undefined || raw[key] === null) return undefined;
    try {
      return fn(raw[key]);
    } catch (e) {
      return fail(key, e);
    }
  };
  const duration = (v: unknown) => parseDuration(typeof v === 'number' ? v : String(v));
  settings.listen = get('listen', (v) => parseAddress(String(v), '127.0.0.1')) ?? settings.listen;
  settings.stats = get('stats', (v) => parseAddress(String(v), '127.0.0.1')) ?? settings.stats;
  settings.hostname = get('hostname', (v) => str(v, 'hostname')) ?? settings.hostname;
  settings.greeting = get('greeting', (v) => parseReply(str(v, 'greeting'), notThree, 'a greeting is 220, or 4xx / 5xx to refuse service')) ?? settings.greeting;
  settings.greetingDelayMs = get('greeting_delay', duration) ?? settings.greetingDelayMs;
  settings.size = get('size', (v) => parseSize(typeof v === 'number' ? v : String(v))) ?? settings.size;
  settings.maxRecipients = get('max_recipients', (v) => positiveInt(v, 'max_recipients', 1_000_000)) ?? settings.maxRecipients;
  settings.maxTrackedRecipients = get('max_tracked_recipients', (v) => positiveInt(v, 'max_tracked_recipients', 100_000_000)) ?? settings.maxTrackedRecipients;
  settings.timeoutMs = get('timeout', duration) ?? settings.timeoutMs;
  settings.verbose = get('verbose', (v) => {
    if (typeof v !== 'boolean') throw new Error('expected true or false');
    return v;
  }) ?? settings.verbose;
  if (raw.rules !== undefined && raw.rules !== null) {
    if (!Array.isArray(raw.rules)) fail('rules', new Error('expected a list of rules'));
    (raw.rules as unknown[]).forEach((r, i) => {
      if (!r || typeof r !== 'object' || Array.isArray(r)) fail('rules', new Error(`rules[${i}]: expected a map such as { rcpt: "bad*@*", reply: "550 5.1.1 User unknown" }`), i);
      try {
        settings.rules.push(buildRule(r as Raw, `rules[${i}]`));
      } catch (e) {
        fail('rules', new Error(`rules[${i}]: ${(e as Error).message}`), i);
      }
    });
  }
}

/** Settings from a YAML text; errors are "FILE:LINE:COL: key: problem". */
export function parseSinkYaml(text: string, file: string, into?: SinkSettings): SinkSettings {
  const settings = into ?? { ...DEFAULT_SETTINGS, rules: [] };
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc });
  if (doc.errors.length) {
    const e = doc.errors[0];
    const p = lc.linePos(e.pos[0]);
    throw new SinkConfigError(`${file}:${p.line}:${p.col}: ${e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}`);
  }
  const raw = doc.toJS() as unknown;
  if (raw === null || raw === undefined) return settings;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new SinkConfigError(`${file}:1:1: expected a map of settings (listen, stats, rules, ...)`);
  const where = (key: string, index?: number) => {
    let node: Node | undefined;
    if (index !== undefined) {
      const rules = doc.get('rules', true) as Node | undefined;
      node = isSeq(rules) ? (rules.items[index] as Node | undefined) : rules;
    } else if (isMap(doc.contents)) {
      const pair = doc.contents.items.find((it) => (it.key as { value?: unknown } | null)?.value === key);
      node = (pair?.key as Node | undefined) ?? undefined;
    }
    const p = node?.range ? lc.linePos(node.range[0]) : { line: 1, col: 1 };
    return `${file}:${p.line}:${p.col}`;
  };
  settingsFromRaw(raw as Raw, settings, where);
  return settings;
}

export function loadSinkFile(file: string, into?: SinkSettings): SinkSettings {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new SinkConfigError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseSinkYaml(text, file, into);
}
