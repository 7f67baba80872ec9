// The spool's schema version (src/spool/schema.ts): a new spool records the version it was
// written with; a spool from before versions were recorded gets each missing column in order
// and its version; a spool from a newer smtplb is refused at start with a message that says so.
import assert from 'node:assert/strict';
import path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'node:test';
import { SCHEMA_VERSION, Spool } from '../src/spool/spool.js';
import { tmpDir } from './helpers/peers.js';
import { put } from './helpers/spool.js';

test('a new spool records its schema version', () => {
  const dir = tmpDir('spool-schema-');
  new Spool(dir).close();
  const db = new Database(path.join(dir, 'queue.db'));
  assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  assert.ok(SCHEMA_VERSION >= 5);
  db.close();
});

test('a spool from before schema versions gets the later columns, keeps its mail, and records the version', async () => {
  const dir = tmpDir('spool-schema-old-');
  // The first schema's two tables as the oldest spools have them (no wait, prefix, body, params, dsn).
  const old = new Database(path.join(dir, 'queue.db'));
  old.exec(`CREATE TABLE messages (id TEXT PRIMARY KEY, created INTEGER NOT NULL, sender TEXT NOT NULL, size INTEGER NOT NULL,
    message_id TEXT, listener TEXT NOT NULL, user TEXT, class TEXT, client TEXT NOT NULL, file TEXT NOT NULL, dsn_of TEXT);
    CREATE TABLE recipients (msg TEXT NOT NULL, rcpt TEXT NOT NULL, domain TEXT NOT NULL, pool TEXT NOT NULL, route INTEGER NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, leased INTEGER NOT NULL DEFAULT 0,
    last_code INTEGER, last_reply TEXT, last_server TEXT, updated INTEGER NOT NULL, PRIMARY KEY (msg, rcpt));
    INSERT INTO messages VALUES ('0000000010AAAAAA001', 1, 'a@x.test', 5, NULL, 'l', NULL, NULL, '127.0.0.1', 'gone', NULL);
    INSERT INTO recipients VALUES ('0000000010AAAAAA001', 'b@y.test', 'y.test', 'p', 0, 'held', 0, 1, 0, NULL, NULL, NULL, 1);`);
  old.close();
  const spool = new Spool(dir);
  try {
    assert.deepEqual(spool.counts().find((c) => c.state === 'held'), { state: 'held', n: 1 }, 'the old row is counted');
    const id = await put(spool, 'c@x.test', Buffer.from('new\r\n'));
    assert.equal(spool.recipients(id)[0].dsn ?? null, null, 'a message written after the migration has the new columns');
  } finally {
    spool.close();
  }
  const db = new Database(path.join(dir, 'queue.db'));
  assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  const cols = (db.prepare(`PRAGMA table_info(messages)`).all() as { name: string }[]).map((c) => c.name);
  for (const c of ['prefix', 'body', 'params']) assert.ok(cols.includes(c), `messages.${c} added`);
  db.close();
});

test('a spool from a newer smtplb is refused with a message naming both versions', () => {
  const dir = tmpDir('spool-schema-new-');
  new Spool(dir).close();
  const db = new Database(path.join(dir, 'queue.db'));
  db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  db.close();
  assert.throws(() => new Spool(dir), new RegExp(`schema is version ${SCHEMA_VERSION + 1}, newer than this smtplb knows \\(${SCHEMA_VERSION}\\)`));
});
