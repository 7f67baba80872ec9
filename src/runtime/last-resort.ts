// The process-level last resort. Every entry point (SMTP sessions, the admin API, signals,
// timers, workers) catches at its own boundary; what still escapes is a bug. Which of those
// the process survives (`survivable`, a pure function tested in hardening-decisions.test.ts):
//
// - A rejected promise leaves no half-done synchronous work behind: logged, and the process
//   keeps serving.
// - A thrown exception may have stopped one operation half-way (one session, one delivery
//   attempt); the mail itself is safe (nothing is acknowledged before it is on disk, and an
//   attempt left half-way is retried from the spool), so it too is logged and survived.
// - Not survivable, whatever the path: the spool's database reporting corruption, or a sync
//   that failed (SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_IOERR_FSYNC, SPOOL_FATAL: what is on
//   disk is no longer known), and a failed internal assertion (an invariant is broken). Those
//   exit (status 70) for the supervisor to restart the process; the spool puts in-flight mail
//   back at start. A write the filesystem refused (read-only, EIO: SQLite rolled it back) is
//   not among them: the spool refuses new mail and probes until it can write again.
// - A burst (over 20 uncaught exceptions within a minute) means state is broken somewhere:
//   exit the same way.
//
// Each distinct error is logged once a minute at most (with how many repeats were held back),
// so a bug on a hot path cannot flood the log; every occurrence is counted by the caller
// (smtplb_internal_errors_total{kind}).
import type { Logger } from 'pino';

const BURST = 20;
const WINDOW_MS = 60_000;
const FATAL_CODES = /^(SQLITE_CORRUPT|SQLITE_NOTADB|SQLITE_IOERR_FSYNC|SPOOL_FATAL|ERR_ASSERTION)/;

/** May the process keep serving after this error reached the last resort? */
export function survivable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return !(typeof code === 'string' && FATAL_CODES.test(code));
}

export type LastResortKind = 'rejection' | 'exception';

export function installLastResort(log: Logger, count: (kind: LastResortKind) => void = () => {}): void {
  const recent: number[] = [];
  const seen = new Map<string, { at: number; held: number }>();
  const report = (kind: LastResortKind, err: unknown) => {
    const e = err as { name?: string; message?: string; stack?: string } | null;
    const key = `${kind}|${e?.stack?.split('\n').slice(0, 2).join('|') ?? String(err)}`;
    const now = Date.now();
    const s = seen.get(key);
    if (s && now - s.at < WINDOW_MS) {
      s.held++;
      return;
    }
    if (seen.size >= 1000) seen.clear();
    seen.set(key, { at: now, held: 0 });
    const what = kind === 'rejection' ? 'unhandled rejection' : 'uncaught exception';
    log.error({ err, repeats_held_back: s?.held ?? 0 }, `internal error (${what}); the process keeps serving`);
  };
  const fatal = (err: unknown, why: string) => {
    log.fatal({ err }, `internal error: ${why}; exiting for a restart`);
    process.exit(70);
  };
  process.on('unhandledRejection', (reason) => {
    count('rejection');
    if (!survivable(reason)) return fatal(reason, 'state that cannot be trusted (spool database or internal invariant)');
    report('rejection', reason);
  });
  process.on('uncaughtException', (err) => {
    count('exception');
    if (!survivable(err)) return fatal(err, 'state that cannot be trusted (spool database or internal invariant)');
    const now = Date.now();
    recent.push(now);
    while (recent.length && recent[0] < now - WINDOW_MS) recent.shift();
    if (recent.length > BURST) return fatal(err, `${recent.length} uncaught exceptions within a minute`);
    report('exception', err);
  });
}
