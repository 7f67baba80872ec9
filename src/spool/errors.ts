// What can go wrong with the spool's disk, as the rest of smtplb sees it: full (452 to new
// mail), refusing writes (read-only or failing: new mail refused until a probe succeeds), or
// in an unknown state after a failed sync (only a restart is safe).

export class SpoolFullError extends Error {}

/** The spool cannot write (read-only or failing filesystem): new mail is refused until it can again. */
export class SpoolUnavailableError extends Error {}

/** The spool's state on disk is no longer known (a sync failed after a commit): only a restart is safe. */
export class SpoolFatalError extends Error {
  readonly code = 'SPOOL_FATAL';
}

/** The disk (or the quota) has no room. */
export function diskFull(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code;
  return code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * A write the filesystem refused as a whole (remounted read-only, failing device): nothing
 * half-done is left (SQLite rolled back; our files are unlinked or never committed), so the
 * spool stops taking writes and probes until it can again.
 */
export function writeRefused(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code;
  return typeof code === 'string' && /^(EROFS|EIO|EACCES|EPERM|SQLITE_READONLY|SQLITE_IOERR|SQLITE_CANTOPEN)/.test(code) && code !== 'SQLITE_IOERR_FSYNC';
}
