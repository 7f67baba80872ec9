import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type LogFormat = 'auto' | 'json' | 'pretty';

/**
 * Readable lines on a terminal, one JSON object per line otherwise (for log shippers).
 * `auto` picks by whether stdout is a TTY. Pretty lines are one per event: time, level, the
 * message (which already names what it is about), then the remaining fields on the same line;
 * colours unless NO_COLOR is set.
 */
export function createLogger(level = 'info', format: LogFormat = 'auto'): Logger {
  const usePretty = format === 'pretty' || (format === 'auto' && !!process.stdout.isTTY);
  const base = { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (usePretty) {
    return pino(
      base,
      pretty({
        colorize: !process.env.NO_COLOR && (process.stdout.isTTY || !!process.env.FORCE_COLOR),
        sync: true,
        singleLine: true,
        ignore: 'pid,hostname',
        translateTime: 'SYS:HH:MM:ss.l',
      }),
    );
  }
  return pino(base);
}
