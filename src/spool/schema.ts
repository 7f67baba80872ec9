// The spool index's tables, and the migrations from older spools, in order. `PRAGMA
// user_version` records how far a spool has come: a spool made by this version starts at the
// last, one from before versions were recorded (user_version 0) gets each ALTER whose column is
// missing (they were added one by one over time, without a number). A spool from a newer
// smtplb (a version past the last known) is refused: its rows may mean what this one cannot read.
import type Database from 'better-sqlite3';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS messages (
  id TEXT PRIMARY KEY, created INTEGER NOT NULL, sender TEXT NOT NULL, size INTEGER NOT NULL,
  message_id TEXT, listener TEXT NOT NULL, user TEXT, class TEXT, client TEXT NOT NULL,
  file TEXT NOT NULL, dsn_of TEXT);
CREATE TABLE IF NOT EXISTS recipients (
  msg TEXT NOT NULL, rcpt TEXT NOT NULL, domain TEXT NOT NULL, pool TEXT NOT NULL, route INTEGER NOT NULL,
  state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, leased INTEGER NOT NULL DEFAULT 0,
  last_code INTEGER, last_reply TEXT, last_server TEXT, updated INTEGER NOT NULL,
  PRIMARY KEY (msg, rcpt));
DROP INDEX IF EXISTS recipients_due;
DROP INDEX IF EXISTS recipients_ready;
CREATE INDEX IF NOT EXISTS recipients_dest ON recipients (pool, domain, state, leased, next_at);
CREATE INDEX IF NOT EXISTS recipients_age ON recipients (pool, domain, msg);
CREATE INDEX IF NOT EXISTS recipients_failed ON recipients (msg) WHERE state = 'failed';
CREATE TABLE IF NOT EXISTS probe (at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  msg TEXT NOT NULL, at INTEGER NOT NULL, rcpt TEXT, kind TEXT NOT NULL, server TEXT, code INTEGER, text TEXT);
CREATE INDEX IF NOT EXISTS events_msg ON events (msg);
CREATE TABLE IF NOT EXISTS suspensions (
  id TEXT PRIMARY KEY, pool TEXT NOT NULL, destination TEXT NOT NULL, until INTEGER NOT NULL,
  reason TEXT NOT NULL, who TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS overrides (
  id TEXT PRIMARY KEY, pool TEXT NOT NULL, destination TEXT NOT NULL, until INTEGER NOT NULL,
  reason TEXT NOT NULL, who TEXT NOT NULL, created INTEGER NOT NULL, concurrency INTEGER, rate TEXT);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, msg TEXT NOT NULL, at INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox_cursors (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS warmup (
  server TEXT NOT NULL, day INTEGER NOT NULL, sent INTEGER NOT NULL, PRIMARY KEY (server, day));
`;

/** Columns added after the first schema, in the order they came; each is migration N+1. */
const MIGRATIONS: { table: string; column: string; type: string; why: string }[] = [
  { table: 'recipients', column: 'wait', type: 'TEXT', why: 'why a queued recipient waits' },
  { table: 'messages', column: 'prefix', type: 'BLOB', why: 'header lines added at acceptance' },
  { table: 'messages', column: 'body', type: 'BLOB', why: 'bodies in the index (older spools keep files)' },
  { table: 'messages', column: 'params', type: 'TEXT', why: 'MAIL FROM parameters (DSN, BODY, SMTPUTF8)' },
  { table: 'recipients', column: 'dsn', type: 'TEXT', why: "the RCPT's NOTIFY and ORCPT" },
  { table: 'messages', column: 'tags', type: 'TEXT', why: 'the X-Smtplb-Tags of the message (JSON), for its events' },
];

/** The schema version this smtplb writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Create the tables and bring an older spool up to date; throws for a spool from a newer smtplb. */
export function migrate(db: Database.Database, dir: string): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) db.close();
  if (version > SCHEMA_VERSION) throw new Error(`${dir}: the spool's schema is version ${version}, newer than this smtplb knows (${SCHEMA_VERSION}): run the smtplb that wrote it`);
  db.exec(SCHEMA);
  for (const m of MIGRATIONS.slice(version)) {
    const cols = (db.prepare(`PRAGMA table_info(${m.table})`).all() as { name: string }[]).map((c) => c.name);
    if (!cols.includes(m.column)) db.exec(`ALTER TABLE ${m.table} ADD COLUMN ${m.column} ${m.type}`);
  }
  if (version !== SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`);
}
