// The options the DKIM worker signs with (src/signing/sign-options.ts): a signature made while
// the clock passes a half second still verifies. mailauth writes t= from Date.now() twice (for
// the signed bytes and for the header) unless signTime is given; the suite's DKIM test through
// Postfix failed now and then on a loaded machine for exactly that ("bad signature").
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { signOptions } from '../../src/signing/sign-options.js';

test('a DKIM signature verifies when half a second passes between mailauth\'s two looks at the clock', async () => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const record = `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;
  const message = Buffer.from('From: news@sign.test\r\nTo: a@dest.test\r\nSubject: t\r\nDate: Sat, 05 Dec 2026 07:24:10 +0000\r\nMessage-ID: <1@sign.test>\r\n\r\nA signed message.\r\n');
  const start = new Date();
  const realNow = Date.now;
  // Each read of the clock 300 ms after the last: the first at 0.4 s into a second, the next at
  // 0.7 s, which Math.round turns into two different t= values.
  let t = Math.floor(realNow() / 1000) * 1000 + 100;
  Date.now = () => (t += 300);
  let signature: string;
  try {
    const r = await dkimSign(message, signOptions({ domain: 'sign.test', selector: 's1', privateKey: pem, algorithm: 'rsa-sha256' }, start) as Parameters<typeof dkimSign>[1]);
    signature = r.signatures.trim();
  } finally {
    Date.now = realNow;
  }
  assert.match(signature, /t=\d+/);
  const resolver = async (name: string, type: string) => {
    if (type === 'TXT' && name.replace(/\.$/, '') === 's1._domainkey.sign.test') return [[record]];
    throw Object.assign(new Error(`no ${type} for ${name}`), { code: 'ENOTFOUND' });
  };
  const v = await dkimVerify(Buffer.concat([Buffer.from(`${signature}\r\n`), message]), { resolver });
  assert.equal(v.results[0]?.status.result, 'pass', JSON.stringify(v.results[0]?.status));
});
