// `smtplb sink --listen H:P [--stats H:P] [-c sink.yaml] [--rule 'k=v,...']... [--verbose]`:
// runs the test MTA in the foreground until SIGTERM / SIGINT.
import { parseArgs } from 'node:util';
import { formatAddress, parseAddress, parseDuration, parseSize } from '../config/units.js';
import { DEFAULT_SETTINGS, loadSinkFile, parseReply, ruleFromFlag, SinkConfigError, type SinkSettings } from './rules.js';
import { startSink } from './sink.js';

export const SINK_USAGE = `usage: smtplb sink [--listen HOST:PORT] [--stats HOST:PORT] [-c sink.yaml] [--rule 'KEY=VALUE,...']...
                  [--hostname NAME] [--greeting "554 ..."] [--greeting-delay 2s] [--size 50MB] [--verbose]

A test MTA: accepts mail, counts it, and misbehaves where rules say so. Nothing is stored.
  --listen    SMTP address (default 127.0.0.1:2525)
  --stats     HTTP address for GET /stats (JSON; ?recipients=0 leaves out the per-address map)
              and POST /reset (default: the listen host, a free port; printed when ready)
  -c FILE     YAML: listen, stats, hostname, greeting, greeting_delay, size, max_recipients,
              max_tracked_recipients (default 1000000), timeout, verbose, rules: [ {...}, ... ]
              (flags win over the file; --rule rules come after the file's rules)
  --rule      one rule in the form KEY=VALUE,KEY=VALUE (a comma starts a new pair only when
              "key=" follows it, so reply texts may contain commas)
  --verbose   log every command and reply to stderr (off by default: no per-message logging)

Rules, first match wins, per recipient. Match (none = every recipient):
  rcpt=GLOB        the address ("bad*@*"; without "@" the local part); * and ?; any case
  domain=GLOB      the domain ("slow.test", "*.example.test")
Actions at RCPT:
  reply=TEXT       e.g. "550 5.1.1 User unknown"; a 421 also closes the connection
  preset=NAME      gmail-unsolicited, gmail-receiving-rate, yahoo-tss04, microsoft-rate-limited,
                   microsoft-s3114, microsoft-s3150 (the providers' wording; {ip} = client IP)
  close=after-rcpt drop the connection when this RCPT arrives, without a reply
Actions at the final dot (the earliest rule among the accepted recipients' rules decides):
  data_reply=TEXT  / data_preset=NAME    the reply to the final dot
  data_delay=DUR   wait (500ms, 2s, 70s, 5m) before answering; delay=DUR is the same key
  close=mid-data   drop the connection once close_after=SIZE of the body arrived (default 1 byte)
  close=after-data take the whole message, count it, and drop the connection without a reply
  long_reply=SIZE  answer with one line of SIZE bytes ("451 4.3.0 long reply xxxx...")
  multiline_reply=N  answer with N lines ("451-4.3.0 ..."); both take data_reply's code and text
A rule with no action accepts normally (to exempt addresses from later rules).
`;

function flag<T>(name: string, value: string | undefined, parse: (v: string) => T): T | undefined {
  if (value === undefined) return undefined;
  try {
    return parse(value);
  } catch (e) {
    throw new SinkConfigError(`--${name}: ${(e as Error).message}`);
  }
}

function addr(v: string): ReturnType<typeof parseAddress> {
  return parseAddress(v, '127.0.0.1');
}

function parseSinkArgs(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    options: {
      listen: { type: 'string', short: 'l' },
      stats: { type: 'string' },
      config: { type: 'string', short: 'c' },
      rule: { type: 'string', multiple: true },
      hostname: { type: 'string' },
      greeting: { type: 'string' },
      'greeting-delay': { type: 'string' },
      size: { type: 'string' },
      verbose: { type: 'boolean', short: 'v' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

/** Parse, start, print the ready line, and stay up until SIGTERM / SIGINT. */
export async function runSinkCommand(args: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseSinkArgs(args);
  } catch (e) {
    throw new SinkConfigError(`${(e as Error).message}\n\n${SINK_USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(SINK_USAGE);
    return;
  }
  if (positionals.length) throw new SinkConfigError(`unexpected argument "${positionals[0]}"\n\n${SINK_USAGE}`);

  let settings: SinkSettings = { ...DEFAULT_SETTINGS, rules: [] };
  if (values.config) settings = loadSinkFile(values.config, settings);
  settings.listen = flag('listen', values.listen, addr) ?? settings.listen ?? { host: '127.0.0.1', port: 2525 };
  settings.stats = flag('stats', values.stats, addr) ?? settings.stats ?? { host: settings.listen.host, port: 0 };
  settings.hostname = values.hostname ?? settings.hostname;
  settings.greeting = flag('greeting', values.greeting, (v) => parseReply(v, (c) => c < 300 || c >= 400, 'a greeting is 220, or 4xx / 5xx to refuse service')) ?? settings.greeting;
  settings.greetingDelayMs = flag('greeting-delay', values['greeting-delay'], parseDuration) ?? settings.greetingDelayMs;
  settings.size = flag('size', values.size, parseSize) ?? settings.size;
  if (values.verbose) settings.verbose = true;
  (values.rule ?? []).forEach((r, i) => settings.rules.push(ruleFromFlag(r, i + 1)));

  let sink;
  try {
    sink = await startSink({ ...settings, listen: settings.listen, stats: settings.stats });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { address?: string; port?: number };
    if (err.code === 'EADDRINUSE' || err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL') {
      throw new SinkConfigError(`cannot listen on ${err.address ?? '?'}:${err.port ?? '?'}: ${err.code}`);
    }
    throw e;
  }
  const listen = formatAddress({ host: sink.host, port: sink.port });
  const stats = formatAddress({ host: settings.stats.host === '0.0.0.0' ? '127.0.0.1' : settings.stats.host, port: sink.statsPort! });
  process.stdout.write(`sink listening on ${listen}, stats on http://${stats}/stats\n`);
  if (settings.verbose) {
    for (const r of settings.rules) process.stderr.write(`rule ${r.name}\n`);
  }
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      sink.close().then(resolve, resolve);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
