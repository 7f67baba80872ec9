// The cleanup stage's intake (src/cleanup/receive.ts) against a real spool in a temp dir:
// however the client's data is cut into chunks, the file holds the message with the class
// header taken out and its line endings made CRLF, nothing else changed, and the header block
// it reports is the same.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { HEADER_MAX, receive } from '../../src/cleanup/receive.js';
import { cleanup } from '../../src/cleanup/cleanup.js';
import { Spool } from '../../src/spool/spool.js';
import { tmpDir } from '../helpers/peers.js';

const spool = new Spool(tmpDir('cleanup-'));
after(() => spool.close());

async function* chunks(buf: Buffer, cuts: number[]): AsyncGenerator<Buffer> {
  let at = 0;
  for (const c of cuts) {
    if (at >= buf.length) break;
    yield buf.subarray(at, Math.min(buf.length, at + c));
    at += c;
  }
  if (at < buf.length) yield buf.subarray(at);
}

async function take(msg: Buffer, cuts: number[]) {
  const got = await receive(chunks(msg, cuts), () => spool.incoming(), 'X-Traffic-Class');
  await got.incoming.seal();
  const file = fs.readFileSync(got.incoming.file);
  await got.incoming.discard();
  return { file, header: got.header.toString('latin1'), value: got.classValue };
}

test('any chunking gives the same file: class header out, bare LF made CRLF, every other byte kept (folded values too)', async () => {
  const eol = fc.constantFrom('\r\n', '\n');
  await fc.assert(
    fc.asyncProperty(eol, fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 400 }), fc.boolean(), async (nl, cuts, withClass) => {
      const head = [`From: a@b.test`, ...(withClass ? [`X-Traffic-Class: bulk`, ` folded`] : []), `Subject: hi`, `Message-ID: <1@b.test>`].join(nl);
      const body = `${nl}body line 1${nl}${nl}X-Traffic-Class: not a header${nl}end${nl}`;
      const msg = Buffer.from(`${head}${nl}${body}`, 'latin1');
      const expected = Buffer.from(`${head.replace(/X-Traffic-Class: bulk(\r?\n) folded\1/, '')}${nl}${body}`, 'latin1');
      const r = await take(msg, cuts);
      // A bare LF is stored as CRLF (cleanup/line-endings.ts): nothing leaves with one.
      assert.equal(r.file.toString('latin1'), expected.toString('latin1').replace(/\r?\n/g, '\r\n'));
      assert.equal(r.value, withClass ? 'bulk folded' : undefined);
      assert.ok(r.header.startsWith('From: a@b.test'));
      assert.ok(!r.header.includes('body line'), 'the header block ends at the blank line');
    }),
    { numRuns: 200 },
  );
});

test('a header block over HEADER_MAX sent in 64-byte chunks: cut at the limit, the rest kept as body, all bytes in the file', async () => {
  const line = `X-Filler: ${'y'.repeat(100)}\r\n`;
  const head = line.repeat(Math.ceil((HEADER_MAX + 10_000) / line.length));
  const msg = Buffer.from(`${head}\r\nbody\r\n`);
  const cuts = Array.from({ length: Math.ceil(msg.length / 64) }, () => 64);
  const r = await take(msg, cuts);
  assert.equal(r.header.length, HEADER_MAX);
  assert.equal(r.file.length, msg.length);
  assert.ok(r.file.equals(msg));
});

test('the tags header is taken out like the class header; the message keeps its tags, and a user\'s tags from the config win', async () => {
  const msg = Buffer.from('From: <a@client.test>\r\nX-Smtplb-Tags: campaign=spring, tenant=mallory\r\nX-Traffic-Class: bulk\r\nSubject: t\r\n\r\nbody\r\n');
  const got = await receive(chunks(msg, [7, 30, 5]), () => spool.incoming(), 'X-Traffic-Class');
  assert.equal(got.tagsValue, 'campaign=spring, tenant=mallory');
  assert.doesNotMatch(got.header.toString('latin1'), /X-Smtplb-Tags|X-Traffic-Class/i);
  const session = { envelope: { mailFrom: { address: 'a@client.test' }, rcptTo: [{ address: 'b@dest.test' }] }, remoteAddress: '127.0.0.1' } as never;
  const deps = { classes: () => ({ header: 'X-Traffic-Class', sender_domains: {} }), route: () => ({ rule: { pool: 'out' }, index: 0 }) as never, signatureFor: async () => '', log: { error: () => {} } as never };
  const r = await cleanup({ got, session, user: { name: 'u', tags: { tenant: 'acme' } }, listener: { name: 'in', identity: 'any' }, hostname: 'gw.test' }, deps);
  assert.ok('message' in r);
  assert.deepEqual(r.message.tags, { campaign: 'spring', tenant: 'acme' });
  await got.incoming.discard();
});
