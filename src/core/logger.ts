import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type LogFormat = 'auto' | 'json' | 'pretty';

/** Readable lines on a terminal, one JSON object per line otherwise (for log shippers). */
export function createLogger(level = 'info', format: LogFormat = 'auto'): Logger {
  const usePretty = format === 'pretty' || (format === 'auto' && process.stdout.isTTY);
  const base = { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (usePretty) return pino(base, pretty({ colorize: true, sync: true, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' }));
  return pino(base);
}
