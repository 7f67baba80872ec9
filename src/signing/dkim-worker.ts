// Runs in a worker thread: DKIM-signs with mailauth, so RSA's CPU cost stays off the thread
// that serves SMTP sessions.
import { parentPort } from 'node:worker_threads';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';

export interface SignJob { id: number; message: Uint8Array; domain: string; selector: string; privateKey: string; algorithm: string; headers?: string[] }
export interface SignDone { id: number; signature?: string; error?: string }

parentPort!.on('message', (job: SignJob) => {
  dkimSign(Buffer.from(job.message.buffer, job.message.byteOffset, job.message.byteLength), {
    signingDomain: job.domain,
    selector: job.selector,
    privateKey: job.privateKey,
    algorithm: job.algorithm,
    canonicalization: 'relaxed/relaxed',
    ...(job.headers ? { headerList: job.headers } : {}),
  })
    .then((r) => {
      const err = r.errors?.[0] as (Error & { message?: string }) | undefined;
      const done: SignDone = err || !r.signatures ? { id: job.id, error: err?.message ?? 'no signature produced' } : { id: job.id, signature: r.signatures };
      parentPort!.postMessage(done);
    })
    .catch((e: Error) => parentPort!.postMessage({ id: job.id, error: e.message } satisfies SignDone));
});
