// The outcome classifier of issue 24: every delivery outcome (an SMTP reply at any stage, a
// failed connection or TLS handshake, a failed DNS lookup of the destination, the end of the
// queue lifetime) gets one class from a fixed list, so reports, suppression lists and alerts can
// say what went wrong in words a mail operator acts on. Pure: plain data in, a class out.
//
// Hand-written because nothing maintained does this for Node: the npm bounce parsers read DSN
// mails, not live replies, and Sisimai (Perl/Ruby/Go) is the reference for bounce reasons but
// is not a JavaScript library and has a different, larger reason set. The decisions below learn
// from Sisimai's reasons and rhost tables, KumoMTA's IANA classifier rules and RFC 3463 / the IANA
// enhanced status code registry; the rules and the tie-breaks are ours.
//
// Order of the steps (the first that decides wins):
//   1. the operator's rules (`classify:` in config), in order: an operator who writes a rule
//      expects it to beat anything shipped. They see the reply as received and as one line.
//   2. the shipped phrase rules (SHIPPED): provider wording precise enough to beat the code the
//      provider sent with it. Providers use codes their own way: Gmail 4.2.1/5.2.1 for a
//      recipient receiving too fast (RFC 3463: mailbox disabled), Microsoft 5.1.10 for an
//      unknown recipient (RFC 7505: null MX) and 5.2.2 for the sender's submission quota,
//      Orange 5.1.1 for a full mailbox, Gmail 5.7.29/5.7.30 for TLS/DKIM (IANA: ARC/REQUIRETLS).
//   3. RFC 7504's 521/556: the host or domain takes no mail, whatever enhanced code came along.
//   4. a specific enhanced status code (classOfEnhancedCode). The generic ones (x.y.0, x.7.1,
//      x.7.2 ...) decide nothing and fall through, as RFC 3463 means them to.
//   5. the fallback phrases (FALLBACK): loose wording ("user unknown", "mailbox unavailable",
//      "too large") that a specific code outranks. Most wording of the classes that feed a
//      suppression list (invalid-recipient, inactive-mailbox, bad-domain) lives here, so a vague
//      phrase never overrides a code that says something else; "mailbox unavailable" (RFC 5321's
//      own 550 text, also sent for policy refusals) counts only when the code is not x.7.x.
//   6. the basic code: 500-504/555 protocol, 530/534/535 auth-policy, 551 routing, 552
//      mailbox-full (RFC 5321's "exceeded storage allocation"), anything else other. A 4xx
//      with nothing recognizable is `other`: it says to retry, not why.
//
// Decisions a mail operator may look for:
//   - rate-limit vs reputation: a deferral that says it limits ("temporarily rate limited",
//     "temporarily deferred", too many connections) is rate-limit even when it names
//     reputation or complaints as the cause: Microsoft S775/S3114 (4.7.650/651), Yahoo TSS04,
//     Gmail 421 4.7.28 "unusual rate of unsolicited mail ... temporarily rate limited". The
//     class says what the receiver did to this attempt and what clears it: slower sending and
//     retries get the mail in (the backoff treats these replies as throttling). Sisimai files
//     these under BadReputation; KumoMTA's shaping docs answer S775 with a Suspend automation,
//     i.e. as throttling, which is our reading. A refusal is reputation: a 5xx, or a 4xx that
//     says blocked or refused (Gmail 421 4.7.28 "temporarily blocked", Orange OFR_999,
//     Yahoo TSS09/TS03 "permanently deferred"). The code alone: 4.7.28 rate-limit, 5.7.28
//     reputation.
//   - reputation vs content: a refusal of the sender (its IP, network or domain: blocklists,
//     complaints, "unsolicited") is reputation; a refusal of this message (its words, links,
//     attachments, a spam score for it) is content: Yandex "under suspicion of SPAM", Mail.ru
//     "spam message rejected", QQ "Mail content denied", Yahoo PH01. Gmail's "likely
//     unsolicited mail" is reputation: Google's own help points at the sender's practices.
//   - x.6.x (RFC 3463 media/conversion: 8BITMIME, bare LF, SMTPUTF8) and malformed headers
//     (RFC 5322) are protocol, not content: the sending software fixes them, not the wording.
//   - auth-policy is the receiver refusing who the sender claims to be: SPF/DKIM/DMARC, PTR
//     and HELO, the envelope sender's address or domain, SMTP AUTH, and Exchange's "sender not
//     authenticated for this group".
//   - kind 'tls' is network, certificate problems included: a failed handshake or a certificate
//     our policy refused is a problem of the path to that MX, not of the address or the
//     message, and it may clear on another MX or later. Kind 'connect' is network. Kind 'dns'
//     is bad-domain when the domain is gone (NXDOMAIN, null MX, no MX and no address: the texts
//     of discovery/mx.ts, or Node's ENOTFOUND), network otherwise (SERVFAIL, timeouts).
//   - kind 'expired' is always expired; operator rules are not asked (the text may carry the
//     last reply, and the expiry, not that reply, is the outcome).
//
// Bounded work: the text is cut to 4 KB before any pattern runs (as throttle.ts does for the
// backoff patterns); the shipped patterns have no nested repeats, and operator patterns pass
// the config's riskyPattern check.

export const OUTCOME_CLASSES = [
  'invalid-recipient', 'inactive-mailbox', 'mailbox-full', 'bad-domain', 'routing', 'auth-policy', 'reputation',
  'rate-limit', 'content', 'message-too-big', 'protocol', 'network', 'expired', 'other',
] as const;
export type OutcomeClass = (typeof OUTCOME_CLASSES)[number];

/** What went wrong, as plain data. */
export interface OutcomeFacts {
  /**
   * 'reply': an SMTP reply (any stage); 'connect': TCP connect refused/reset/timed out or connection lost without a reply;
   * 'tls': TLS handshake or certificate failure; 'dns': lookup failure of the destination (text says NXDOMAIN/SERVFAIL/timeout/null MX);
   * 'expired': the queue lifetime ran out.
   */
  kind: 'reply' | 'connect' | 'tls' | 'dns' | 'expired';
  /** The reply code (421, 550, ...) when kind is 'reply'; null otherwise. */
  code: number | null;
  /**
   * The whole reply text, multi-line replies joined with a space or newline (may include the code and the enhanced code at the start
   * of each line, as servers send them: "550-5.1.1 The email account ... \n550 5.1.1 ..."), or the error text for other kinds.
   */
  text: string;
}

export interface ClassRule { pattern: RegExp; class: OutcomeClass }

/** Whether a class means the address itself is bad (what may feed a suppression list by default). */
export const SUPPRESSIBLE_DEFAULT: readonly OutcomeClass[] = ['invalid-recipient', 'inactive-mailbox', 'bad-domain'];

/** Longest text any pattern sees: the patterns backtrack, so their cost grows with the text. */
const MAX_TEXT = 4096;

/** A phrase rule; `when` gets the reply's enhanced code (or null) and may veto the match. */
type Rule = readonly [RegExp, OutcomeClass, ((enhanced: string | null) => boolean)?];

const notPolicy = (enhanced: string | null): boolean => !enhanced || enhanced.split('.')[1] !== '7';

// Step 2. Order matters: the sender's identity and TLS first (Gmail's "rate limited because it
// is unauthenticated" is auth-policy), then the recipient-specific wordings, then limits before
// blocks (a rate limit that names reputation is rate-limit), then the providers' block codes,
// then verdicts on the message, then the sender's blocks. No rule matches the bare word "spam":
// Gmail's auth, PTR, rate and format replies all say "to protect our users from spam".
const SHIPPED: readonly Rule[] = [
  // Greylisting: a deliberate first-attempt deferral; nothing to fix, the retry goes through.
  [/gr[ae]ylist/i, 'other'],
  // PTR / reverse DNS / HELO: Gmail 4.7.23/5.7.25, GMX and WEB.DE "DNS PTR resource record",
  // Postfix "cannot find your hostname", Comcast "Reverse DNS failure", Microsoft 5.7.506.
  [/\bptr record|dns ptr resource record|reverse dns|reverse hostname|cannot find your hostname/i, 'auth-policy'],
  [/ipv6 sending guidelines|access denied, bad helo/i, 'auth-policy'],
  // SPF / DKIM / DMARC and the envelope sender: every large provider, Postfix's "Sender address
  // rejected", Exim's "Sender verify failed", Yahoo's unresolvable RFC5321 domain, Orange's
  // "Emetteur invalide", Microsoft "not authenticated", Gmail's Workspace relay refusals.
  [/\b(?:spf|dkim|dmarc)\b|sender policy framework|unauthenticated(?! commands)|not authenticated/i, 'auth-policy'],
  [/authentication (?:level|checks?|requirements)/i, 'auth-policy'],
  [/unresolvable rfc\.?532[12]|sender address rejected|sender verify failed|domain of sender address|invalid sender|emetteur invalide/i, 'auth-policy'],
  [/invalid credentials for relay|e?mail relay denied/i, 'auth-policy'],
  // TLS the receiver requires and did not get (Gmail 4.7.29 "rate limited because you're not
  // using a TLS connection", "TLS required for RCPT domain", 530 "Must issue a STARTTLS").
  [/tls required for rcpt domain|not using a tls connection|must issue a starttls|use tls\/ssl for smtp|starttls is required/i, 'protocol'],
  // One recipient, in the provider's words: Gmail "receiving mail at a rate" (4.2.1/5.2.1),
  // Yahoo "receiving mail too quickly", Microsoft 5.2.121/5.2.122 per-hour receive limits.
  [/receiving (?:e-?mail|mail) (?:at a rate|too quickly)|per hour message receive limit|exceeded their limit for/i, 'rate-limit'],
  // Microsoft: RESOLVER.ADR (5.1.10 is its unknown recipient) and DBEB's 5.4.1 AS(201806281).
  [/resolver\.adr\.(?:recip(?:ient)?notfound|exrecipnotfound)|not found by smtp address lookup/i, 'invalid-recipient'],
  [/recipient address rejected: access denied\. as\(\d+\)/i, 'invalid-recipient'],
  // iCloud "inactive email address" (a 5.1.1), Gmail "out of storage space and inactive"
  // (OverQuotaPerm), Orange/La Poste archived or blocked accounts, Yahoo/AOL disabled accounts.
  [/inactive email address|out of storage space and inactive|archived recipient|boite du destinataire archivee/i, 'inactive-mailbox'],
  [/recipient account is ?blocked/i, 'inactive-mailbox'],
  [/this mailbox is disabled|is no longer valid|account has been disabled or discontinued/i, 'inactive-mailbox'],
  // Limits. Microsoft RP-00x, Yahoo TSS04 ("temporarily deferred"), QQ "frequency limited"
  // (sent as 550), Gmail daily/peak relay limits (5.4.5/4.2.1), Microsoft "submission quota",
  // Orange "Trop de connexions", Comcast RL codes ("Throttled").
  [/\brate.?limit|throttl|too many (?:connections|messages|sessions|recipients|concurrent|mails|emails)/i, 'rate-limit'],
  [/frequency limited|temporarily deferred|excessive volume|try again slower|max message per connection|submission quota exceeded/i, 'rate-limit'],
  [/daily (?:user )?sending (?:quota|limit)|(?:daily|peak) smtp relay (?:sending )?limit|same message-id|limits for how many messages/i, 'rate-limit'],
  [/\bRP-00[1-3]\b|trop de connexions/i, 'rate-limit'],
  [/over ?quota|quota exceeded|exceeded (?:its |their )?(?:storage )?quota|mailbox (?:is )?full|mailbox size limit/i, 'mailbox-full'],
  [/out of storage space|exhausted allowed storage|exceeded storage allocation|boite du destinataire pleine/i, 'mailbox-full'],
  // An expiry reported by a relay further on (Microsoft 5.4.300/5.4.316 "Message expired").
  [/message expired|delivery time expired|queue expired/i, 'expired'],
  [/relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited)|unable to relay|does not accept e-?mail over ipv6/i, 'routing'],
  [/hop count exceeded|too many hops|exceeded \d+ hops|mail loop|routing loop|loops back to myself/i, 'routing'],
  [/nonexistent ?domain|domain is not reachable/i, 'bad-domain'],
  [/not rfc ?5322 compliant|rfc ?5322 section|missing a valid (?:address in the from|message-id)|multiple addresses in the from/i, 'protocol'],
  [/encoded-word syntax|unicode character in a disallowed header|message is malformed|headers are not rfc compliant|duplicate header/i, 'protocol'],
  [/bare ?(?:line ?feeds?|lf)/i, 'protocol'],
  // Providers' block codes: Outlook.com SC/OU/DY, Comcast BL/ES, Orange/La Poste 101-103/510/999,
  // iCloud CS01/HM08 ("rejected due to local policy"), T-Online "(BL)".
  [/\b(?:SC|OU|DY)-00\d\b|\bBL0\d{5}\b|\bES0000(?:01|10)\b|\b(?:OFR|LPN)[A-Z0-9]*_(?:10[1-3]|510|999)\b|\[(?:CS|HM)\d\d\]|\(BL\)/, 'reputation'],
  // This message: Gmail's content/links and security verdicts, Yandex, Mail.ru, rspamd, Zoho,
  // QQ, Yahoo PH01 (phishing/malware content), Exchange's content filter, scanners' viruses.
  [/nature of the content|content presents a potential security issue|(?:illegal|banned|forbidden|prohibited|unsafe) attachment/i, 'content'],
  [/spam message|suspicion of spam|(?:flagged|classified|detected|identified|marked) as spam|spam detected|spam content|looks like spam/i, 'content'],
  [/probability of spam|content (?:denied|rejected|restrictions|filter)|virus|malware|\[PH\d\d\]|policy violation detected|mail score/i, 'content'],
  // The sender: blocklists by name, reputation, complaints, bans, "unsolicited".
  [/block ?list|black ?list|blocked using|\brbls?\b|dnsbl|spamhaus|spamcop|barracuda|sorbs|(?<!not )\blisted (?:on|in|at|by)\b/i, 'reputation'],
  [/reputation|unsolicited|banned (?:sender|sending ip)|spam abuse|permanently deferred|user complaints|block(?:ed)? for spam/i, 'reputation'],
  [/pour incident de spam|not authorized to send (?:e-?mail )?directly|traffic not accepted|reject due to policy restrictions/i, 'reputation'],
];

// Step 5: wording that a specific enhanced code outranks.
const FALLBACK: readonly Rule[] = [
  [/user unknown|unknown (?:user|recipient|address|local.?part)|no such (?:user|mailbox|recipient|address)/i, 'invalid-recipient'],
  [/(?:user|mailbox|recipient|address|account) (?:does not|doesn'?t) exist|(?:does not|doesn'?t) have an? [\w.-]+ account/i, 'invalid-recipient'],
  [/mailbox not found|recipient not found|user not found|invalid (?:recipient|mailbox)|no mailbox here|mailbox unallocated/i, 'invalid-recipient'],
  [/not our customer|not listed in (?:the )?domino directory|destinataire invalide/i, 'invalid-recipient'],
  [/mailbox (?:is )?unavailable/i, 'invalid-recipient', notPolicy],
  [/(?:account|mailbox|user) (?:is |has been )?(?:disabled|inactive|suspended|deactivated|closed)/i, 'inactive-mailbox'],
  [/(?:domain|host) (?:does not exist|not found|unknown)|no such domain/i, 'bad-domain'],
  [/unrouteable address|no route to host/i, 'routing'],
  [/message (?:size|too (?:large|big))|too (?:large|big)|size exceeds|exceeds (?:the )?(?:maximum|size)|taille limite/i, 'message-too-big'],
  [/syntax error|bad sequence|command (?:not implemented|unrecognized)|unrecognized command/i, 'protocol'],
];

/** Subject.detail -> class for the specific codes of RFC 3463 and the IANA registry. */
const BY_CODE: Readonly<Record<string, OutcomeClass>> = {
  '1.1': 'invalid-recipient', '1.3': 'invalid-recipient', '1.4': 'invalid-recipient', '1.2': 'bad-domain', '1.10': 'bad-domain',
  '1.6': 'inactive-mailbox', '1.7': 'auth-policy', '1.8': 'auth-policy',
  '1.90': 'rate-limit', '1.351': 'invalid-recipient', // Microsoft: daily recipient limit; "unknown recipient or mailbox unavailable"
  '2.1': 'inactive-mailbox', '2.2': 'mailbox-full', '2.3': 'message-too-big', '2.121': 'rate-limit', '2.122': 'rate-limit',
  '3.3': 'protocol', '3.4': 'message-too-big', '3.5': 'routing',
  '4.1': 'network', '4.2': 'network', '4.3': 'network', '4.8': 'network', '4.4': 'routing', '4.6': 'routing', '4.14': 'routing',
  // Congestion: the receiver takes less now (Gmail also sends 5.4.5 for its daily sending limits).
  '4.5': 'rate-limit', '4.7': 'expired',
  '5.1': 'protocol', '5.2': 'protocol', '5.4': 'protocol', '5.5': 'protocol', '5.6': 'protocol', '5.3': 'rate-limit',
  '7.5': 'network', '7.10': 'protocol', '7.11': 'protocol', '7.30': 'protocol', '7.13': 'inactive-mailbox', '7.16': 'message-too-big',
  '7.17': 'invalid-recipient', '7.18': 'bad-domain', '7.57': 'auth-policy',
};

/** The enhanced-code-only decision (RFC 3463, the IANA registry, Microsoft's documented 5.7.5xx-7xx); null: too generic to say. */
export function classOfEnhancedCode(enhanced: string): OutcomeClass | null {
  const m = /^([245])\.(\d{1,3})\.(\d{1,3})$/.exec(enhanced.trim());
  if (!m || m[1] === '2') return null;
  const temporary = m[1] === '4';
  const subject = Number(m[2]);
  const detail = Number(m[3]);
  if (detail === 0) return null; // x.y.0: "other or undefined"
  // Exchange Online 4.4.3xx/5.4.3xx: 300 message expired, 310 DNS domain does not exist, the rest DNS/connection/TLS failures.
  if (subject === 4 && detail >= 300 && detail < 400) return detail === 300 ? 'expired' : detail === 310 ? 'bad-domain' : 'network';
  if (subject === 6) return 'protocol';
  if (subject === 7) {
    if (detail === 28) return temporary ? 'rate-limit' : 'reputation'; // mail flood detected: a throttle when 4xx, a block when 5xx
    if ([8, 9, 12, 14].includes(detail) || (detail >= 20 && detail <= 29)) return 'auth-policy'; // SMTP AUTH, DKIM/SPF/PTR/DMARC, null MX sender, ARC
    if (detail >= 100 && detail < 200) return 'auth-policy'; // Exchange 5.7.1xx: sender not allowed for this recipient/group
    if (detail >= 500) return microsoft(temporary, detail);
  }
  return BY_CODE[`${subject}.${detail}`] ?? null;
}

/** Exchange Online's 4.7.5xx-8xx and 5.7.5xx-7xx (Microsoft's NDR reference). */
function microsoft(temporary: boolean, detail: number): OutcomeClass | null {
  if (temporary) return detail < 900 ? 'rate-limit' : null; // "Server busy / access denied, please try again later", S775/S3114/S3115
  if (detail <= 503 || detail === 507 || detail === 511 || detail === 513) return 'reputation'; // spam abuse, rejected by recipient org, banned
  if (detail === 504) return 'invalid-recipient';
  if (detail === 505) return 'inactive-mailbox'; // banned recipient
  if (detail === 506 || detail === 509 || detail === 515) return 'auth-policy'; // bad HELO, DMARC, authentication level
  if (detail === 508) return 'rate-limit'; // IPv6 range exceeded permitted limits
  if (detail === 510) return 'routing'; // does not accept mail over IPv6
  if (detail === 512) return 'protocol'; // From not RFC 5322 compliant
  if ((detail >= 606 && detail <= 649) || (detail >= 700 && detail <= 750)) return 'reputation'; // banned IP, tenant/unregistered domains
  return null;
}

/** The first enhanced code in the reply, not part of an IP address or version string. */
function enhancedIn(text: string): string | null {
  const m = /(?<![\d.])([45]\.[0-7]\.\d{1,3})(?!\.?\d)/.exec(text);
  return m ? m[1] : null;
}

/** One line, without the "550-5.1.1 " each line of a multi-line reply starts with (Gmail breaks phrases across them). */
function oneLine(text: string): string {
  return text.replace(/(^|\s)[2-5]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3}\s)?/g, ' ').replace(/\s+/g, ' ').trim();
}

function firstRule(rules: readonly Rule[], text: string, enhanced: string | null): OutcomeClass | null {
  for (const [re, cls, when] of rules) if (re.test(text) && (!when || when(enhanced))) return cls;
  return null;
}

function operatorClass(rules: readonly ClassRule[], texts: readonly string[]): OutcomeClass | null {
  for (const r of rules) {
    for (const t of texts) {
      // A /g or /y pattern keeps lastIndex between calls; reset it so the same facts always give the same class.
      r.pattern.lastIndex = 0;
      if (r.pattern.test(t)) return r.class;
    }
  }
  return null;
}

const DNS_GONE = /nxdomain|enotfound|does not exist|null mx|accepts no mail|no mx and no (?:a\b|address)/i;

/**
 * One class for an outcome. Operator rules (checked first, in order, against the reply text) win; then the shipped provider rules;
 * then the enhanced status code; then the basic code. Bounded work: the text is cut to 4 KB before any pattern runs.
 */
export function classifyOutcome(facts: OutcomeFacts, operatorRules: readonly ClassRule[] = []): OutcomeClass {
  if (facts.kind === 'expired') return 'expired';
  const raw = String(facts.text ?? '').slice(0, MAX_TEXT);
  const flat = oneLine(raw);
  const operator = operatorClass(operatorRules, raw === flat ? [raw] : [raw, flat]);
  if (operator) return operator;
  if (facts.kind === 'connect' || facts.kind === 'tls') return 'network';
  if (facts.kind === 'dns') return DNS_GONE.test(raw) ? 'bad-domain' : 'network';

  const code = facts.code ?? leadingCode(raw);
  const enhanced = enhancedIn(raw);
  return firstRule(SHIPPED, flat, enhanced)
    ?? (code === 521 || code === 556 ? 'bad-domain' : null)
    ?? (enhanced ? classOfEnhancedCode(enhanced) : null)
    ?? firstRule(FALLBACK, flat, enhanced)
    ?? byBasicCode(code);
}

function leadingCode(text: string): number | null {
  const m = /^\s*([2-5]\d\d)(?:[ -]|$)/.exec(text);
  return m ? Number(m[1]) : null;
}

function byBasicCode(code: number | null): OutcomeClass {
  if (code === null) return 'other';
  if ((code >= 500 && code <= 504) || code === 555) return 'protocol';
  if (code === 530 || code === 534 || code === 535) return 'auth-policy';
  if (code === 551) return 'routing'; // user not local
  if (code === 552) return 'mailbox-full';
  return 'other';
}
