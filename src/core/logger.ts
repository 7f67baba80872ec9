import pino, { type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';

export type LogFormat = 'auto' | 'json' | 'pretty';

// C0 and C1 control characters (and DEL), except tab.
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/g;

/**
 * Text safe to print on a terminal: remote replies (an SMTP greeting, a 4xx text) can carry
 * escape sequences that would move the cursor, retitle the window or fake log lines. Line
 * breaks become spaces, other C0/C1 controls are dropped, tabs stay.
 */
export function printable(text: string): string {
  return text.replace(/\r\n|[\r\n]/g, ' ').replace(CONTROLS, '');
}

/**
 * Readable lines on a terminal, one JSON object per line otherwise (for log shippers).
 * `auto` picks by whether stdout is a TTY. Pretty lines are one per event: time, level, the
 * message (which already names what it is about; stripped of control characters), then the
 * remaining fields on the same line (not a delivery's record: its message is the short line);
 * colours unless NO_COLOR is set.
 */
export function createLogger(level = 'info', format: LogFormat = 'auto'): Logger {
  const usePretty = format === 'pretty' || (format === 'auto' && !!process.stdout.isTTY);
  const base = { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (usePretty) {
    const prettify = prettyFactory({
      colorize: !process.env.NO_COLOR && (process.stdout.isTTY || !!process.env.FORCE_COLOR),
      singleLine: true,
      // A delivery's record is for log shippers; its message says it in one line (delivery-log.ts).
      ignore: 'pid,hostname,delivery',
      translateTime: 'SYS:HH:MM:ss.l',
      // One line per event, whatever the message carries.
      messageFormat: (log, key) => (log[key] === undefined ? '' : printable(String(log[key]))),
    });
    const out = pino.destination({ dest: 1, sync: true });
    // The other fields are printed as JSON, which escapes C0 controls but leaves DEL and C1 (a
    // one-byte CSI, U+009B) as they are: dropped here. Colours are ESC sequences, not touched.
    return pino(base, { write: (line: string) => void out.write(prettify(line).replace(/[\u007f-\u009f]/g, '')) });
  }
  return pino(base);
}
