// The configuration reference (docs/configuration.md), made from the zod schema itself so that
// it cannot drift: every key path of configSchema, its type and default read from the schema,
// and its one-line meaning from MEANINGS below. A key in the schema without a meaning here, or
// a meaning for a key the schema no longer has, is an error: adding a key means saying what it
// does. Regenerate with `npm run docs:config` (test/config-docs.test.ts fails when the file is
// stale). Reads the schema only; nothing here runs when smtplb does.
import { fileURLToPath } from 'node:url';
import { configSchema } from './schema.js';

/** A zod v4 schema as far as this module looks at it: its definition and, for numbers, its bounds. */
interface Node {
  _zod: { def: Def };
  minValue?: number | null;
  maxValue?: number | null;
}
interface Def {
  type: string;
  innerType?: Node;
  defaultValue?: unknown;
  shape?: Record<string, Node>;
  element?: Node;
  keyType?: Node;
  valueType?: Node;
  options?: Node[];
  entries?: Record<string, string>;
  values?: unknown[];
  in?: Node;
  out?: Node;
  catchall?: Node;
  checks?: { _zod: { def: { check: string; format?: string; pattern?: RegExp } } }[];
  error?: (issue: unknown) => unknown;
}

const def = (s: Node): Def => s._zod.def;

/** Placeholder written for the keys of a map of sections (`pools.<name>.kind`). */
const PLACEHOLDERS: Record<string, string> = {
  pools: '<name>',
  shaping: '<destination>',
  'dkim.domains': '<domain>',
};

/**
 * Defaults that the schema computes on the machine it runs on (or that are too long for a
 * table), written as words so that the file is the same everywhere.
 */
const DEFAULT_TEXT: Record<string, string> = {
  hostname: "the machine's host name",
  'cluster.node': "the machine's host name (characters other than letters, digits, `_ . -` made `-`)",
  'listeners[].tls.ciphers': "Mozilla's intermediate list (see SECURITY.md, TLS)",
};

/** One line per key path: what it means to an operator. Keep each to one line. */
const MEANINGS: Record<string, string> = {
  hostname: 'The name smtplb gives in its greeting, EHLO (unless a pool sets `helo`), Received lines and DSNs.',
  spool: 'Directory of the durable queue (SQLite index `queue.db`, large bodies under `messages/`; `shard-N` per extra worker).',
  workers: 'Processes: 1, a number, or `auto` (one per core). More than 1 runs a primary and that many workers; see docs/operations.md.',
  max_connections: 'Connections held at once over all listeners together; past it a new client reads `421`.',
  shutdown_timeout: 'On SIGTERM/SIGINT, how long open sessions and deliveries may finish before they are cut.',
  log: 'The process log.',
  'log.level': 'Least severe level written.',
  'log.format': '`auto`: one readable line per event on a terminal, JSON lines otherwise; `json` or `pretty` force one.',
  admin: 'The admin HTTP listener: `/metrics`, `/healthz`, `/readyz`, the JSON API, the dashboard. Without it the CLI cannot reach smtplb.',
  'admin.listen': 'Address of the admin API and dashboard.',
  'admin.token': 'Bearer token for the API and dashboard (`/metrics`, `/healthz`, `/readyz` need none); required when `listen` is not loopback.',
  listeners: 'Where smtplb accepts connections; at least one.',
  'listeners[].name': 'Name used in logs, metrics, routes (`listener:`) and status.',
  'listeners[].listen': 'Address to bind, `host:port` (`:25` for all addresses, `[::]:25` for IPv6).',
  'listeners[].mode': '`smtp`: an ESMTP server that accepts and relays mail; `tcp`: a layer-4 proxy to `pool`.',
  'listeners[].pool': '`mode: tcp`: the pool whose servers take the connections.',
  'listeners[].send_proxy': '`mode: tcp`: send a PROXY header of this version to the server.',
  'listeners[].accept_proxy': 'Networks whose PROXY v1/v2 header is read for the client address (your load balancers).',
  'listeners[].max_connections': 'Connections this listener holds at once (per process); unset: only the global limit.',
  'listeners[].client_timeout': 'Idle time allowed to the client before the session is closed.',
  'listeners[].server_timeout': '`mode: tcp`: idle time allowed to the server before the connection is closed.',
  'listeners[].relay_networks': 'Client networks that may relay without AUTH. Anyone else must authenticate over TLS or gets `554 5.7.1` at RCPT.',
  'listeners[].require_auth': 'Every client must authenticate (over TLS), even from `relay_networks`.',
  'listeners[].tls': 'Certificate for STARTTLS (or implicit TLS on 465). Without it no TLS is offered, so no AUTH either.',
  'listeners[].tls.cert': 'PEM certificate chain file (read again on SIGHUP).',
  'listeners[].tls.key': 'PEM private key file (`smtplb check` verifies it matches the certificate).',
  'listeners[].tls.implicit': 'TLS from the first byte (port 465) instead of STARTTLS.',
  'listeners[].tls.ciphers': 'OpenSSL cipher list, TLS 1.3 suites by their `TLS_` names in the same list.',
  'listeners[].tls.min_version': 'Oldest TLS version accepted.',
  'listeners[].delivery': '`queue`: `250` once the message is on disk; `cutthrough`: `250` after an upstream\'s `250`.',
  'listeners[].class': 'Traffic class of mail from this listener when nothing more specific names one.',
  'listeners[].max_message_size': 'Largest message accepted (SIZE, `552 5.3.4` past it).',
  'listeners[].max_recipients': 'Recipients per message; more get `452 4.5.3`.',
  'listeners[].max_clients': 'Sessions this listener serves at once; more get `421`.',
  'listeners[].max_connections_per_ip': 'Sessions per client (an IPv4 address or an IPv6 /64).',
  'listeners[].max_auth_failures': 'Failed AUTH attempts before a client is locked out for a while.',
  'listeners[].identity': 'Relay-network clients: `aligned` signs only a From domain aligned with the envelope sender; `any` signs any configured domain.',
  'listeners[].cutthrough_fallback': '`delivery: cutthrough` when no upstream took the message: `queue` it (the client gets `250`), or `reject` with `451 4.4.1` so the client keeps it.',
  'listeners[].bare_line_endings': 'A bare CR or LF in DATA: `normalize` to CRLF, or `reject` the message with `550 5.5.2`.',
  'listeners[].forbid_unauth_pipelining': 'Refuse (`554 5.5.0`, then close) a client that pipelines where RFC 2920 forbids it.',
  users: 'Accounts that may authenticate (AUTH PLAIN/LOGIN over TLS only).',
  'users[].name': 'User name given in AUTH.',
  'users[].password': 'Password hash from `smtplb passwd` (scrypt), never the password itself.',
  'users[].class': 'Traffic class of this user\'s mail (before the class header).',
  'users[].sender_domains': 'Domains this user may send as (envelope sender and header From); unset: any.',
  pools: 'Named groups of upstream relays (`kind: relay`) or of source addresses for direct-to-MX (`kind: mx`).',
  'pools.<name>.kind': '`relay`: deliver to `servers`; `mx`: deliver to each domain\'s MX hosts from `sources`.',
  'pools.<name>.sources': '`kind: mx`: local addresses to send from, balanced like servers.',
  'pools.<name>.sources[].name': 'Name in logs, metrics and status (default: the address).',
  'pools.<name>.sources[].address': 'Local IP address to bind before connecting.',
  'pools.<name>.sources[].helo': 'EHLO name for this address (should match its PTR; `smtplb doctor` checks).',
  'pools.<name>.sources[].weight': 'Balancing weight; 0 takes no new mail.',
  'pools.<name>.sources[].max_connections': 'Connections from this address at once.',
  'pools.<name>.sources[].warmup': 'Daily volume plan for a new address.',
  'pools.<name>.sources[].warmup.start': 'Day 1 of the plan.',
  'pools.<name>.sources[].warmup.schedule': 'Messages allowed on day 1, 2, …; after the last day, no cap.',
  'pools.<name>.sources[].warmup.overflow': 'Mail over today\'s cap: `spill` to other sources/servers, or `hold` until tomorrow.',
  'pools.<name>.mx': '`kind: mx`: how MX hosts are looked up and reached.',
  'pools.<name>.mx.resolver': 'DNS server `host:port`; unset: the system\'s.',
  'pools.<name>.mx.port': 'Port of the MX hosts.',
  'pools.<name>.mx.timeout': 'Wait for one DNS answer.',
  'pools.<name>.mx.retries': 'Further DNS tries after a timeout or network error.',
  'pools.<name>.balance': 'How a server is picked: smooth weighted `roundrobin`, `leastconn`, `first` usable, `random2` (best of two), `source` (client address hash).',
  'pools.<name>.servers': '`kind: relay`: the upstream SMTP servers.',
  'pools.<name>.servers[].name': 'Name in logs, metrics, status and `smtplb server` commands (default: the address).',
  'pools.<name>.servers[].address': 'Upstream `host:port`.',
  'pools.<name>.servers[].weight': 'Balancing weight; 0 takes no new mail.',
  'pools.<name>.servers[].max_connections': 'Connections to this server at once; past it mail waits up to `queue_timeout`.',
  'pools.<name>.servers[].backup': 'Used only when no non-backup server of the pool is usable.',
  'pools.<name>.servers[].source': 'Local address to connect from.',
  'pools.<name>.servers[].warmup': 'Daily volume plan for a new relay.',
  'pools.<name>.servers[].warmup.start': 'Day 1 of the plan.',
  'pools.<name>.servers[].warmup.schedule': 'Messages allowed on day 1, 2, …; after the last day, no cap.',
  'pools.<name>.servers[].warmup.overflow': 'Mail over today\'s cap: `spill` to other servers, or `hold` until tomorrow.',
  'pools.<name>.discover': 'Find the servers in DNS instead of listing them (give `a` or `srv`).',
  'pools.<name>.discover.a': 'Name whose A/AAAA records are the servers (needs `port`).',
  'pools.<name>.discover.srv': 'SRV name, e.g. `_smtp._tcp.relays.example.com` (priority and weight honoured).',
  'pools.<name>.discover.port': 'Port of the servers found by `a`.',
  'pools.<name>.discover.resolver': 'DNS server `host:port`; unset: the system\'s.',
  'pools.<name>.discover.refresh': 'Fixed re-resolve interval; unset: the records\' TTL.',
  'pools.<name>.discover.min_ttl': 'Shortest re-resolve interval, whatever the TTL.',
  'pools.<name>.health': 'Active health checks of each server.',
  'pools.<name>.health.check': '`smtp`: greeting, EHLO (optional STARTTLS), QUIT; `tcp`: connect only; `none`: always up.',
  'pools.<name>.health.interval': 'Time between checks of one server.',
  'pools.<name>.health.timeout': 'Wait for one check.',
  'pools.<name>.health.rise': 'Passed checks in a row before a down server is up.',
  'pools.<name>.health.fall': 'Failed checks in a row before an up server is down.',
  'pools.<name>.health.starttls': 'The `smtp` check completes a STARTTLS handshake too.',
  'pools.<name>.health.helo': 'EHLO name of the check; unset: `hostname`.',
  'pools.<name>.fallback': 'Pool that takes the mail when no server of this one is up.',
  'pools.<name>.slowstart': 'A server back up ramps its weight from 0 to full over this time.',
  'pools.<name>.retries': 'Further servers tried for one message in one attempt before it is deferred.',
  'pools.<name>.connect_timeout': 'Wait for a TCP connection to a server.',
  'pools.<name>.queue_timeout': 'Wait for a free connection slot when every server is at `max_connections`.',
  'pools.<name>.outlier': 'Passive ejection of servers failing live traffic.',
  'pools.<name>.outlier.consecutive_failures': 'Connect failures or timeouts in a row that eject a server.',
  'pools.<name>.outlier.ejection': 'First ejection period; it doubles with each ejection in a row.',
  'pools.<name>.outlier.max_ejection': 'Longest ejection period.',
  'pools.<name>.send_proxy': '`mode: tcp` listeners on this pool: send a PROXY header of this version.',
  'pools.<name>.helo': 'EHLO name toward this pool\'s servers; unset: `hostname`.',
  'pools.<name>.tls': 'STARTTLS to the servers: `none`, `may` (when offered), `require` (unchecked), `verify` (chain and name; private CA via `NODE_EXTRA_CA_CERTS`).',
  'pools.<name>.auth': 'AUTH to the servers.',
  'pools.<name>.auth.user': 'User name.',
  'pools.<name>.auth.pass': 'Password (plain text: keep the config file private).',
  'pools.<name>.reuse': 'Connection reuse toward the servers (like Postfix\'s connection cache).',
  'pools.<name>.reuse.messages': 'Messages one connection carries before it is closed.',
  'pools.<name>.reuse.seconds': 'Age after which a connection is not reused.',
  'pools.<name>.reuse.idle': 'An unused connection closes after this (held longer, it takes an upstream session slot others wait for).',
  'pools.<name>.destination_concurrency': 'Deliveries in flight to one destination through this pool, for the whole node (split across workers).',
  'pools.<name>.timeout': 'Wait for each reply from a server (other than the final dot\'s).',
  'pools.<name>.data_timeout': 'Wait for the reply to the final dot; past it the outcome is unknown and the mail is deferred.',
  routes: 'Which pool each recipient goes to: the first route whose given keys all match; a route with only `pool` is the default.',
  'routes[].domains': 'Recipient domains: `example.com` exact, `*.example.com` or `.example.com` its subdomains.',
  'routes[].class': 'Traffic class of the message.',
  'routes[].sender_domains': 'Envelope sender domains.',
  'routes[].user': 'Authenticated user.',
  'routes[].listener': 'Listener that took the message.',
  'routes[].pool': 'Pool the matching mail goes to.',
  'routes[].postfix_transport': 'A Postfix transport(5) file: each `domain smtp:[host]:port` line becomes a route to a one-server pool (this form replaces the keys above).',
  'routes[].tls': 'With `postfix_transport`: STARTTLS policy of the pools it makes.',
  classes: 'Traffic classes (transactional, marketing, …) for routing.',
  'classes.header': 'Header a trusted client may set to name the class; removed before signing and delivery.',
  'classes.sender_domains': 'Envelope sender domain → class name.',
  shaping: 'Per-destination limits, keyed by recipient domain, `*.parent`, `default`, or `site:NAME` (every domain on that MX site together); mail over a limit waits, nothing is refused.',
  'shaping.preset': '`providers`: the shipped per-site limits for the large mailbox providers (src/routing/providers.ts, each value with its source); your own entries override them field by field.',
  unsubscribe: 'One-click unsubscribe (RFC 8058) per traffic class: List-Unsubscribe added or required, and the public endpoint its URLs point at.',
  'unsubscribe.listen': 'Address of the public unsubscribe endpoint (`/u/TOKEN`), apart from the admin listener; unset: another server serves `base_url`.',
  'unsubscribe.base_url': 'What the added URLs start with (`https://u.example.com` gives `https://u.example.com/u/TOKEN`).',
  'unsubscribe.secret': 'HMAC key of the tokens (a token binds recipient, sender domain, tags and time; no row per message is stored).',
  'unsubscribe.mailto': 'An address added beside the URL as `<mailto:...?subject=unsubscribe TOKEN>`; mail to it at any smtp listener (point its domain\'s MX at smtplb) unsubscribes as a click does.',
  'unsubscribe.max_age': 'How long a token keeps working after the message was sent.',
  'unsubscribe.classes': 'Per traffic class: what to do about unsubscribing.',
  'unsubscribe.classes.<name>.add': 'Add List-Unsubscribe and List-Unsubscribe-Post (DKIM-signed) to a single-recipient message of this class that has none.',
  'unsubscribe.classes.<name>.require': 'Refuse (`550 5.7.0`) a message of this class without a one-click unsubscribe of its own (or, with `add`, one that cannot be given one).',
  feedback: 'Complaints: feedback-loop reports (ARF, RFC 5965: Yahoo CFL, Microsoft JMRP, ...) taken at these addresses; the recipient is suppressed, `complained` told, and complaint rates kept.',
  'feedback.addresses': 'Addresses that take reports on every smtp listener, from any client (never relayed; alone in their transaction).',
  'feedback.keep': 'How long deliveries are remembered to find the message a complaint is about (`<spool>/feedback.db`).',
  complaints: 'What complaint rates do (they are counted with `feedback:`).',
  'complaints.pause_at': 'A complaint rate over 24 hours (e.g. `0.3%`) at which a class or tag is paused: a named suspension `class:NAME` / `tag:K=V`; its new mail gets `451` at DATA. Unset: never paused.',
  'complaints.min_delivered': 'Deliveries in 24 hours a class or tag needs before its rate can pause it.',
  'complaints.pause_for': 'How long a pause lasts unless an operator lifts it (`smtplb unsuspend ID`).',
  compliance: 'The compliance gate: bulk classes checked at send time against `smtplb doctor`\'s findings (DKIM key, DMARC alignment, egress PTR/HELO) for their sending domain. Needs `doctor.interval` above 0; a check that fails holds nothing.',
  'compliance.mode': '`warn`: send and log; `hold`: failing mail waits in the queue (never bounced for it) until the records are fixed or `smtplb queue release ID`.',
  'compliance.classes': 'The bulk classes the gate applies to.',
  'compliance.recheck': 'How often waiting mail is looked at again (the records themselves are checked every `doctor.interval`).',
  sites: 'MX sites by name: host-name patterns (`*.google.com`) of the MX hosts on each, over the shipped provider sites (`google`, `microsoft`, `yahoo`, `apple`, ...); a name given here replaces the shipped one.',
  'pools.<name>.site_lookup': '`mx`: look up each destination\'s MX to count `site:` shaping per site (the default for `kind: mx`); `none`: per-domain keys (the default for relays).',
  'shaping.<destination>.concurrency': 'Deliveries in flight per (server or source, destination); shared by workers and cluster nodes.',
  'shaping.<destination>.rate': 'Messages per period, e.g. `600/min`, `20000/hour`.',
  'shaping.<destination>.burst': 'Messages the rate lets go at once after a quiet time.',
  'shaping.<destination>.messages_per_connection': 'Messages one connection carries to this destination.',
  'shaping.<destination>.connect_rate': 'New connections per period.',
  backoff: 'Adaptive backoff on throttling replies (421/450/451 "try again later", Yahoo `TSS04`, Microsoft `S3150` …).',
  'backoff.patterns': 'Extra reply patterns (case-insensitive regular expressions) that count as throttling; ones that can backtrack exponentially are refused.',
  'backoff.decrease': 'Factor applied to concurrency and rate on each throttling reply.',
  'backoff.min_factor': 'Lowest factor the pair goes down to.',
  'backoff.increase': 'Added to the factor on each clean delivery, up to 1.',
  'backoff.suspend_after': 'Throttling replies within `window` that suspend the pair.',
  'backoff.window': 'Time window for `suspend_after`.',
  'backoff.suspend_for': 'How long such a suspension lasts.',
  dkim: 'DKIM signing at acceptance, the same signature whichever pool delivers.',
  'dkim.domains': 'Signing keys by domain (the header From\'s, else the envelope sender\'s).',
  'dkim.domains.<domain>.selector': 'Selector: the key is published at `selector._domainkey.domain`.',
  'dkim.domains.<domain>.key_file': 'PEM private key file (`smtplb dkim keygen` makes one).',
  'dkim.domains.<domain>.algorithm': 'Signing algorithm, matching the key.',
  'dkim.headers': 'Header fields to sign; unset: mailauth\'s default list.',
  'dkim.threads': 'Worker threads that sign (RSA is CPU-heavy).',
  cluster: 'Several nodes sharing limits, warm-up counts, backoff, suspensions, overrides and server drain/weight through Redis; see docs/operations.md.',
  'cluster.redis': 'Redis URL: `redis://host:port/db`, `rediss://` for TLS, `redis://:password@host:port/db`.',
  'cluster.node': 'This node\'s name; unique per node.',
  'cluster.lease_ttl': 'A dead node\'s concurrency slots come back after this.',
  'cluster.timeout': 'A Redis reply slower than this puts the node on its local share of the limits.',
  'cluster.sync': 'Heartbeat, and how soon suspensions, overrides and drains reach the other nodes.',
  'cluster.prefix': 'Key prefix in Redis, so several clusters can share one Redis.',
  doctor: 'Identity checks (SPF, DKIM, DMARC, PTR/HELO, MX, MTA-STS): `smtplb doctor`, and in the daemon.',
  'doctor.resolver': 'DNS server `host:port`; unset: a `kind: mx` pool\'s `mx.resolver`, else the system\'s.',
  'doctor.interval': 'How often the daemon runs the checks (also at start and after each reload); 0 turns that off.',
  'doctor.timeout': 'Wait for one DNS answer.',
  delivery_log: 'One JSON line per delivery attempt and per final outcome.',
  'delivery_log.file': 'File to append to (SIGUSR1 reopens it for logrotate); unset: the lines go to the process log.',
  queue: 'The queue of `delivery: queue` listeners (and cut-through mail that could not go at once).',
  events: 'Every outcome as an event to the application: received, delivered, deferred, bounced, expired, suppressed (written with the outcome, sent at least once).',
  'events.webhooks': 'Receivers of JSON arrays by HTTP POST, retried with backoff until they answer 2xx.',
  'events.webhooks[].url': 'Where to POST (http:// or https://); redirects are not followed.',
  'events.webhooks[].secret': 'Signs each body: `X-Smtplb-Signature: sha256=<HMAC-SHA256 of the body, hex>`.',
  'events.webhooks[].types': 'Only these event types; unset: all.',
  'events.webhooks[].batch': 'Events per POST at most.',
  'events.webhooks[].timeout': 'A POST not answered within this is a failure (sent again later).',
  'events.file': 'Append one JSON line per event to this file.',
  'events.max_outbox': 'Events kept for sinks that do not take them; past this the oldest are dropped (smtplb_events_dropped_total).',
  'events.tags_header': 'The header an application tags a message with (`k=v, k2=v2`): copied into its events, removed before signing and delivery.',
  'users[].tags': 'Tags on every message of this user, in its events (`{ tenant: acme }`); they win over the message\'s tags header.',
  classify: 'Your own reply classes, checked before the shipped rules: `[{ pattern, class }]`; the first pattern (case-insensitive) that matches the reply decides.',
  'classify[].pattern': 'A regular expression matched against the reply text (ones that can backtrack exponentially are refused).',
  'classify[].class': 'One of the fixed classes: invalid-recipient, inactive-mailbox, mailbox-full, bad-domain, routing, auth-policy, reputation, rate-limit, content, message-too-big, protocol, network, expired, other.',
  suppression: 'Addresses not to send to again: fed by permanent failures that say the address is bad and by the operator (`smtplb suppression`), checked at RCPT.',
  'suppression.enabled': 'Check and feed the list; false turns both off (entries are kept).',
  'suppression.scope': '`sender_domain`: each envelope sender domain has its own list (global entries apply to all); `global`: one list.',
  'suppression.action': '`refuse`: `550 5.1.1 <addr>: recipient suppressed (reason)` at RCPT; `drop`: accepted, not delivered, logged and counted.',
  'suppression.from_classes': 'Reply classes whose final 5xx adds the recipient; only classes about the address (never rate-limit, reputation, auth-policy, network, protocol or any 4xx).',
  'suppression.bounce_ttl': 'How long an entry added by a bounce lasts; 0 keeps it until removed.',
  'queue.retry': 'Waits between attempts of a deferred recipient; the last one repeats.',
  'queue.max_age': 'A recipient still undelivered after this is bounced (DSN to the sender).',
  'queue.min_free': 'New mail gets `452 4.3.1` when the spool\'s disk has less free space (bounces are never held for it).',
  'queue.max_deliveries': 'Deliveries in flight at once over all destinations, for the whole node (split across workers).',
  'queue.delay_warning': 'Send one "delayed" DSN per recipient still waiting after this; 0: none.',
};

/** Type of a schema that is not a section, in words. */
function typeOf(s: Node): string {
  const d = def(s);
  switch (d.type) {
    case 'default':
    case 'prefault':
    case 'optional':
    case 'nullable':
      return typeOf(d.innerType!);
    case 'string': {
      const name = d.checks?.some((c) => c._zod.def.pattern?.source === '^[A-Za-z0-9_.-]+$');
      return name ? 'name' : 'string';
    }
    case 'boolean':
      return 'true / false';
    case 'number': {
      const int = d.checks?.some((c) => c._zod.def.check === 'number_format');
      const lo = s.minValue;
      const hi = s.maxValue;
      const range = lo !== undefined && lo !== null && Number.isFinite(lo) && hi !== undefined && hi !== null && Number.isFinite(hi) ? ` ${fmtNumber(lo)}–${fmtNumber(hi)}` : '';
      return `${int ? 'integer' : 'number'}${range}`;
    }
    case 'enum':
      return Object.values(d.entries!).map((v) => `\`${v}\``).join(' / ');
    case 'literal':
      return d.values!.map((v) => `\`${String(v)}\``).join(' / ');
    case 'union':
      return d.options!.map(typeOf).join(' or ');
    case 'pipe':
      return unitOf(s) ?? typeOf(d.in!);
    case 'array':
      return `list of ${typeOf(d.element!)}`;
    case 'record':
      return `map of ${typeOf(d.keyType!)} → ${typeOf(d.valueType!)}`;
    case 'object':
      return 'section';
    default:
      return d.type;
  }
}

/** The value languages of units.ts, told apart by the message the schema gives for a bad value. */
function unitOf(s: Node): string | undefined {
  const d = def(s);
  if (d.type !== 'pipe') return undefined;
  const input = def(d.in!);
  if (input.type === 'string' && input.checks?.some((c) => c._zod.def.pattern?.source.includes('%'))) return 'percentage';
  if (input.type === 'string' && def(d.out!).type === 'transform') return 'regular expression';
  if (input.type !== 'union' || !input.error) return undefined;
  const said = String(input.error({}));
  const units: [RegExp, string][] = [
    [/duration/, 'duration'],
    [/address/, 'host:port'],
    [/size/, 'size'],
    [/network/, 'network (CIDR)'],
    [/rate/, 'rate (N/period)'],
    [/date/, 'date (YYYY-MM-DD)'],
  ];
  return units.find(([re]) => re.test(said))?.[1];
}

function fmtNumber(n: number): string {
  return n >= 10_000 ? n.toLocaleString('en-US') : String(n);
}

function fmtDuration(ms: number): string {
  if (ms === 0) return '0';
  for (const [unit, n] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) if (ms % n === 0) return `${ms / n}${unit}`;
  return `${ms}ms`;
}

function fmtSize(bytes: number): string {
  for (const [unit, n] of [['GB', 1024 ** 3], ['MB', 1024 ** 2], ['KB', 1024]] as const) if (bytes % n === 0) return `${bytes / n}${unit}`;
  return String(bytes);
}

/** A default value as an operator would write it in the YAML file. */
function fmtDefault(value: unknown, s: Node): string {
  const unit = unitOf(s) ?? (def(s).type === 'array' ? unitOf(def(s).element!) : undefined);
  const one = (v: unknown): string => {
    if (typeof v === 'number' && unit === 'duration') return fmtDuration(v);
    if (typeof v === 'number' && unit === 'size') return fmtSize(v);
    return typeof v === 'string' ? v : JSON.stringify(v);
  };
  if (Array.isArray(value)) return `\`[${value.map(one).join(', ')}]\``;
  if (value !== null && typeof value === 'object') return Object.keys(value).length ? '' : '`{}`';
  return `\`${one(value)}\``;
}

export interface KeyRow {
  /** `listeners[].tls.cert`, `pools.<name>.servers[].address` */
  path: string;
  type: string;
  default: string;
  meaning: string;
}

/** Strips default/optional wrappers, noting the default and whether the key may be left out. */
function unwrap(s: Node): { inner: Node; hasDefault: boolean; defaultValue: unknown; optional: boolean } {
  let inner = s;
  let hasDefault = false;
  let defaultValue: unknown;
  let optional = false;
  for (;;) {
    const d = def(inner);
    if ((d.type === 'default' || d.type === 'prefault') && !hasDefault) {
      hasDefault = true;
      defaultValue = typeof d.defaultValue === 'function' ? (d.defaultValue as () => unknown)() : d.defaultValue;
    }
    if (d.type === 'optional') optional = true;
    // A transform after the shape (shaping's preset expansion): the shape is what operators write.
    if (d.type === 'pipe' && d.in && def(d.in).type === 'object') {
      inner = d.in;
      continue;
    }
    if (!['default', 'prefault', 'optional', 'nullable'].includes(d.type)) return { inner, hasDefault, defaultValue, optional };
    inner = d.innerType!;
  }
}

/** The object shapes a list or map holds, if it holds sections (a union of objects gives several). */
function sectionsOf(s: Node): Record<string, Node>[] {
  const { inner } = unwrap(s);
  const d = def(inner);
  if (d.type === 'object') return [d.shape!];
  if (d.type === 'union') return d.options!.flatMap(sectionsOf);
  return [];
}

function walk(shape: Record<string, Node>, prefix: string, rows: KeyRow[], seen: Set<string>, alternative = false): void {
  for (const [key, schema] of Object.entries(shape)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (seen.has(path)) continue;
    seen.add(path);
    const { inner, hasDefault, defaultValue, optional } = unwrap(schema);
    const d = def(inner);
    let type = typeOf(inner);
    let children: Record<string, Node>[] = [];
    let childPrefix = path;
    let extra: { prefix: string; shapes: Record<string, Node>[] } | undefined;
    if (d.type === 'object') {
      children = [d.shape!];
      // Named keys beside a map of sections (`shaping: { preset, <destination>: {...} }`).
      if (d.catchall && sectionsOf(d.catchall).length) {
        extra = { prefix: `${path}.${PLACEHOLDERS[path] ?? '<name>'}`, shapes: sectionsOf(d.catchall) };
        type = `map of \`${PLACEHOLDERS[path] ?? '<name>'}\` → section`;
      }
    } else if (d.type === 'array' && sectionsOf(d.element!).length) {
      children = sectionsOf(d.element!);
      childPrefix = `${path}[]`;
      type = 'list of sections';
    } else if (d.type === 'record' && sectionsOf(d.valueType!).length) {
      children = sectionsOf(d.valueType!);
      childPrefix = `${path}.${PLACEHOLDERS[path] ?? '<name>'}`;
      type = `map of \`${PLACEHOLDERS[path] ?? '<name>'}\` → section`;
    }
    const meaning = MEANINGS[path];
    if (meaning === undefined) throw new Error(`src/config/reference.ts: no meaning for config key ${path}: add one to MEANINGS`);
    const shown = DEFAULT_TEXT[path] ?? (hasDefault ? fmtDefault(defaultValue, inner) : optional ? 'unset' : alternative ? '**required** in its form' : '**required**');
    rows.push({ path, type, default: shown, meaning });
    for (const c of children) walk(c, childPrefix, rows, seen, children.length > 1);
    if (extra) for (const c of extra.shapes) walk(c, extra.prefix, rows, seen, extra.shapes.length > 1);
  }
}

/** Every key path of the config schema with its type, default and meaning, in schema order. */
export function configKeys(): KeyRow[] {
  const rows: KeyRow[] = [];
  walk(def(configSchema as unknown as Node).shape!, '', rows, new Set());
  const unknown = Object.keys(MEANINGS).filter((k) => !rows.some((r) => r.path === k));
  if (unknown.length) throw new Error(`src/config/reference.ts: MEANINGS has keys the schema does not: ${unknown.join(', ')}`);
  return rows;
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** docs/configuration.md. */
export function configReference(): string {
  const rows = configKeys();
  const out: string[] = [
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/schema.ts by src/config/reference.ts: do not edit by hand.',
    '     Regenerate with `npm run docs:config`; test/config-docs.test.ts fails when this file is stale. -->',
    '',
    'smtplb reads one YAML file, given as `-c FILE`. `smtplb check -c FILE` validates it and',
    'reports each problem as `FILE:LINE:COL: key.path: what is wrong`; SIGHUP reloads it (an',
    'invalid file is reported and the running config kept). Unknown keys are errors.',
    '',
    'Value notations: durations `500ms`, `2s`, `5m`, `1h`, `5d` (a bare number is milliseconds);',
    'sizes `512KB`, `25MB`, `1GB`; addresses `host:port` (`:25` all addresses, `[::1]:25` IPv6);',
    'networks `10.0.0.0/8`, `2001:db8::/32`; rates `600/min`, `20000/hour`, `10/s`; dates',
    '`2026-11-27`.',
    '',
    'Key paths: `a.b` is key `b` inside section `a`; `a[]` is a list of sections, each with the',
    'keys listed under `a[].…`; `a.<name>` is a map whose keys you choose. "unset" means the key',
    'may be left out and has no default value; the meaning says what happens then.',
    '',
    'A complete example is in the [README](../README.md#configuration).',
  ];
  const sections: { title: string; rows: KeyRow[] }[] = [];
  for (const r of rows) {
    const top = r.path.split(/[.[]/)[0];
    const scalarTop = r.path === top && r.type !== 'section' && r.type !== 'list of sections' && !r.type.endsWith('→ section');
    const title = scalarTop ? 'Top level' : top;
    let sec = sections.find((x) => x.title === title);
    if (!sec) sections.push((sec = { title, rows: [] }));
    sec.rows.push(r);
  }
  for (const sec of sections) {
    out.push('', `## ${sec.title === 'Top level' ? sec.title : `\`${sec.title}\``}`, '', '| key | type | default | meaning |', '|---|---|---|---|');
    for (const r of sec.rows) out.push(`| \`${r.path}\` | ${cell(r.type)} | ${cell(r.default || '—')} | ${cell(r.meaning)} |`);
  }
  return `${out.join('\n')}\n`;
}

// `node dist/src/config/reference.js > docs/configuration.md`
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.stdout.write(configReference());
