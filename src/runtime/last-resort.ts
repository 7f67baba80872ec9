// The process-level last resort. Every entry point (SMTP sessions, the admin API, signals,
// timers, workers) catches at its own boundary; what still escapes is a bug. A rejected
// promise leaves no half-done synchronous work behind, so the process logs it and keeps
// serving. A thrown exception may have stopped one operation half-way; the mail itself is
// safe (nothing is acknowledged before it is on disk), so it too is logged and survived, but
// a burst of them means state is broken: then the process exits for its supervisor to
// restart it, and the spool puts in-flight mail back on start.
import type { Logger } from 'pino';

const BURST = 20;
const WINDOW_MS = 60_000;

export function installLastResort(log: Logger, count: (kind: 'rejection' | 'exception') => void = () => {}): void {
  const recent: number[] = [];
  process.on('unhandledRejection', (reason) => {
    count('rejection');
    log.error({ err: reason }, 'internal error (unhandled rejection); the process keeps serving');
  });
  process.on('uncaughtException', (err) => {
    count('exception');
    const now = Date.now();
    recent.push(now);
    while (recent.length && recent[0] < now - WINDOW_MS) recent.shift();
    if (recent.length > BURST) {
      log.fatal({ err }, `internal error: ${recent.length} uncaught exceptions within a minute; exiting for a restart`);
      process.exit(70);
    }
    log.error({ err }, 'internal error (uncaught exception); the process keeps serving');
  });
}
