// Runs in a worker thread: DKIM-signs with mailauth, so RSA's CPU cost stays off the thread
// that serves SMTP sessions.
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { parentPort } from 'node:worker_threads';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { signOptions, type SignDone, type SignJob } from './sign-options.js';

export type { SignDone, SignJob };

// Test hook, for the failure path of the pool in dkim.ts (test/hardening-dkim.test.ts): with
// SMTPLB_TEST_DKIM_FAULT=FILE in the environment, the worker that takes the next job while
// FILE exists removes it and, as FILE says, exits ("exit") or hangs ("hang") the way a crashed
// or stuck worker would. Unset (always, outside tests) it costs nothing.
const faultFile = process.env.SMTPLB_TEST_DKIM_FAULT;

function injectFault(file: string): void {
  let what: string;
  try {
    what = fs.readFileSync(file, 'utf8').trim();
    fs.unlinkSync(file); // whoever removes it acts: one fault per file
  } catch {
    return;
  }
  if (what === 'exit') process.exit(3); // in a worker thread: ends the thread, not the process
  if (what === 'hang') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
}

parentPort!.on('message', (job: SignJob) => {
  if (faultFile) injectFault(faultFile);
  const prefix = job.prefix ? Buffer.from(job.prefix.buffer, job.prefix.byteOffset, job.prefix.byteLength) : undefined;
  const message = job.file ? undefined : Buffer.from(job.message!.buffer, job.message!.byteOffset, job.message!.byteLength);
  const input = job.file
    ? prefix
      ? Readable.from((async function* () {
          yield prefix;
          yield* fs.createReadStream(job.file!, { highWaterMark: 64 * 1024 });
        })())
      : fs.createReadStream(job.file, { highWaterMark: 64 * 1024 })
    : prefix
      ? Buffer.concat([prefix, message!])
      : message!;
  dkimSign(input, signOptions(job) as Parameters<typeof dkimSign>[1])
    .then((r) => {
      const err = r.errors?.[0] as { err?: Error; message?: string } | undefined;
      const signature = r.signatures?.trim();
      const done: SignDone = err || !signature ? { id: job.id, error: err?.err?.message ?? err?.message ?? 'no signature produced' } : { id: job.id, signature: `${signature}\r\n` };
      parentPort!.postMessage(done);
    })
    .catch((e: Error) => parentPort!.postMessage({ id: job.id, error: e.message } satisfies SignDone));
});
