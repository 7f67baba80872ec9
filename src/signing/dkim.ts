// DKIM signing at acceptance, before the spool: every pool then sends the same signed bytes,
// so the identity does not depend on which upstream delivers. Keys are per sender domain (the
// From header's, else the envelope sender's). The worker-thread pool is a few lines written
// here rather than a dependency: jobs are uniform and short, so round-robin over N threads
// with a promise per job is all it needs.
import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { SignDone, SignJob } from './dkim-worker.js';

export interface DkimKey { domain: string; selector: string; algorithm: string; privateKey: string }

export interface DkimConfig { domains: Record<string, { selector: string; key_file: string; algorithm: string }>; headers?: string[]; threads: number }

/** Read every key file now, so a bad one is found at start or reload, not at the first message. */
export function loadKeys(cfg: DkimConfig): Map<string, DkimKey> {
  const keys = new Map<string, DkimKey>();
  for (const [domain, k] of Object.entries(cfg.domains)) {
    keys.set(domain.toLowerCase(), { domain: domain.toLowerCase(), selector: k.selector, algorithm: k.algorithm, privateKey: fs.readFileSync(k.key_file, 'utf8') });
  }
  return keys;
}

/**
 * The header fields a signature covers when it is present in the message: mailauth's default
 * list, plus List-Unsubscribe-Post (RFC 8058 section 4: the one-click pair must be signed,
 * and Gmail and Yahoo check it). Both List-Unsubscribe fields are added to an operator's own
 * `dkim.headers` too.
 */
export const SIGNED_HEADERS = [
  'From', 'Sender', 'Reply-To', 'Subject', 'Date', 'Message-ID', 'To', 'Cc', 'MIME-Version', 'Content-Type', 'Content-Transfer-Encoding',
  'Content-ID', 'Content-Description', 'Resent-Date', 'Resent-From', 'Resent-Sender', 'Resent-To', 'Resent-Cc', 'Resent-Message-ID',
  'In-Reply-To', 'References', 'List-Id', 'List-Help', 'List-Unsubscribe', 'List-Unsubscribe-Post', 'List-Subscribe', 'List-Post',
  'List-Owner', 'List-Archive', 'BIMI-Selector',
];

/** The list mailauth is given: as one colon-separated string (an array is silently ignored for the default list). */
export function signedHeaderList(configured: string[] | undefined): string {
  const list = configured?.length ? [...configured] : [...SIGNED_HEADERS];
  for (const h of ['List-Unsubscribe', 'List-Unsubscribe-Post']) if (!list.some((x) => x.toLowerCase() === h.toLowerCase())) list.push(h);
  return list.join(':');
}

/** A signing job that takes longer than this fails (the client gets 451) and its worker is replaced. */
const SIGN_TIMEOUT = 30_000;

/** Added to a job's time limit while its worker thread is still starting. */
const STARTUP_GRACE = 10_000;

export class DkimSigner {
  private workers: Worker[] = [];
  /** Workers that have started (their 'online' event came). */
  private online = new WeakSet<Worker>();
  private next = 0;
  private seq = 0;
  private closing = false;
  private waiting = new Map<number, { resolve: (s: string) => void; reject: (e: Error) => void; worker: Worker; timer: NodeJS.Timeout }>();
  private file = fileURLToPath(new URL('./dkim-worker.js', import.meta.url));
  private timeoutMs: number;

  constructor(private keys: Map<string, DkimKey>, private headers: string[] | undefined, threads: number, opts: { timeoutMs?: number } = {}) {
    this.timeoutMs = opts.timeoutMs ?? SIGN_TIMEOUT;
    for (let i = 0; i < threads; i++) this.workers.push(this.spawn());
  }

  /**
   * A worker thread. One that fails (an uncaught error in it) or exits fails its pending jobs
   * with an error (a temporary failure for the client: nothing was acknowledged) and is
   * replaced, so later messages are signed again.
   */
  private spawn(): Worker {
    const w = new Worker(this.file);
    w.once('online', () => this.online.add(w));
    w.on('message', (d: SignDone) => {
      const p = this.waiting.get(d.id);
      if (!p) return;
      this.settle(d.id);
      if (d.signature) p.resolve(d.signature);
      else p.reject(new Error(d.error ?? 'signing failed'));
      this.retireIfIdle(w);
    });
    const lost = (why: string) => {
      for (const [id, p] of this.waiting) {
        if (p.worker !== w) continue;
        this.settle(id);
        p.reject(new Error(`DKIM worker ${why}`));
      }
      this.replace(w);
    };
    w.on('error', (e) => lost(`failed: ${e.message}`));
    w.on('exit', (code) => lost(`exited (${code})`));
    w.unref();
    return w;
  }

  /** Take `w` out of rotation at once (a fresh worker in its place), so no new job is sent to a worker that is going. */
  private replace(w: Worker): void {
    const i = this.workers.indexOf(w);
    if (i >= 0 && !this.closing) this.workers[i] = this.spawn();
  }

  private settle(id: number): void {
    const p = this.waiting.get(id);
    if (!p) return;
    clearTimeout(p.timer);
    this.waiting.delete(id);
  }

  /** For tests of the failure path: end one worker thread as a crash would. */
  crashOne(): Promise<number> {
    return this.workers[0].terminate();
  }

  /** New keys and headers (reload); `threads` grows or shrinks the pool, a retired worker ending once its jobs are done. */
  setKeys(keys: Map<string, DkimKey>, headers?: string[], threads = this.workers.length): void {
    this.keys = keys;
    this.headers = headers;
    threads = Math.max(1, threads);
    while (this.workers.length < threads) this.workers.push(this.spawn());
    for (const w of this.workers.splice(threads)) {
      this.retiring.add(w);
      this.retireIfIdle(w);
    }
  }

  /** Workers taken out of rotation by a smaller `threads`, ended once their last job is answered. */
  private retiring = new Set<Worker>();

  private retireIfIdle(w: Worker): void {
    if (!this.retiring.has(w)) return;
    for (const p of this.waiting.values()) if (p.worker === w) return;
    this.retiring.delete(w);
    void w.terminate();
  }

  keyFor(...domains: (string | undefined)[]): DkimKey | undefined {
    for (const d of domains) if (d && this.keys.has(d)) return this.keys.get(d);
    return undefined;
  }

  /** The message with a DKIM-Signature header on top, or unchanged when no key matches. */
  async sign(message: Buffer, ...domains: (string | undefined)[]): Promise<Buffer> {
    const signature = await this.run({ message }, domains);
    return signature ? Buffer.concat([Buffer.from(signature, 'latin1'), message]) : message;
  }

  /**
   * The DKIM-Signature header for a message as the spool holds it while it arrives: its bytes
   * (a small one, copied to the worker) or its file's path (read by the worker as a stream,
   * never whole); '' when no key matches.
   */
  signatureFor(message: Buffer | string, ...domains: (string | undefined)[]): Promise<string> {
    return this.run(Buffer.isBuffer(message) ? { message } : { file: message }, domains);
  }

  /** The same, for `prefix` (header fields smtplb adds) on top of the message. */
  signatureWith(prefix: Buffer, message: Buffer | string, ...domains: (string | undefined)[]): Promise<string> {
    return this.run(Buffer.isBuffer(message) ? { message, prefix } : { file: message, prefix }, domains);
  }

  private async run(input: Pick<SignJob, 'message' | 'file' | 'prefix'>, domains: (string | undefined)[]): Promise<string> {
    const key = this.keyFor(...domains);
    if (!key) return '';
    const id = this.seq++;
    const job: SignJob = { id, ...input, domain: key.domain, selector: key.selector, privateKey: key.privateKey, algorithm: key.algorithm, headers: signedHeaderList(this.headers) };
    const worker = this.workers[this.next++ % this.workers.length];
    return new Promise<string>((resolve, reject) => {
      // A worker still starting (a replacement, under load) gets time to start on top: its
      // start-up is not the job's slowness.
      const limit = this.online.has(worker) ? this.timeoutMs : this.timeoutMs + STARTUP_GRACE;
      const timer = setTimeout(() => {
        this.settle(id);
        reject(new Error(`DKIM signing took over ${limit} ms`));
        // A hung worker: replaced now, then ended (its exit fails whatever else it held).
        this.replace(worker);
        void worker.terminate();
      }, limit);
      this.waiting.set(id, { resolve, reject, worker, timer });
      worker.postMessage(job);
    });
  }

  /** Worker threads in rotation (tests, status). */
  get threads(): number {
    return this.workers.length;
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all([...this.workers, ...this.retiring].map((w) => w.terminate()));
    for (const [id, p] of this.waiting) {
      this.settle(id);
      p.reject(new Error('signer closed'));
    }
  }
}
