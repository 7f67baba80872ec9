// The delivery log: one JSON line per delivery attempt and per final outcome, the record an
// operator greps when a customer asks "where is my mail?". To a file (reopened on SIGUSR1,
// so logrotate can move it away) or, without a file, through the process log.
import fs from 'node:fs';
import type { Logger } from 'pino';

export interface DeliveryRecord {
  event: 'attempt' | 'delivered' | 'bounced' | 'expired';
  queue_id: string;
  message_id: string | null;
  sender: string;
  recipient?: string;
  recipient_domain: string;
  recipients?: number;
  route: number | null;
  pool: string;
  server: string | null;
  code: number | null;
  enhanced_code: string | null;
  reply: string;
  queue_delay_ms: number;
  delivery_ms: number | null;
  attempt?: number;
  /** The reply class of a failure (src/outcomes/reply-class.ts). */
  class?: string;
}

export { enhancedCode } from '../outcomes/facts.js';

/** A reply as one line, its code once: upstream replies arrive with their code ("250 2.0.0 Ok"), ours may not. */
export function replyLine(code: number | null, text: string): string {
  const t = text.trim();
  if (code === null) return t ? `- ${t}` : '-';
  return new RegExp(`^${code}[ -]`).test(t) || t === String(code) ? t : `${code} ${t}`.trim();
}

/** A delivery as one short line: event, queue id, recipient, server, reply (bounded), delay. */
export function terminalLine(r: DeliveryRecord): string {
  const reply = replyLine(r.code, r.reply);
  const delay = r.queue_delay_ms >= 1000 ? `${(r.queue_delay_ms / 1000).toFixed(1)} s` : `${r.queue_delay_ms} ms`;
  return `${r.event} ${r.queue_id} to ${r.recipient ?? r.recipient_domain} via ${r.pool}/${r.server ?? '-'}: ${reply.length > 120 ? `${reply.slice(0, 117)}...` : reply} (${delay})`;
}

/** Lines are gathered this long (or up to FLUSH_BYTES) and written together: one write, not one per delivery. */
const FLUSH_MS = 20;
const FLUSH_BYTES = 64 * 1024;

export class DeliveryLog {
  private out?: fs.WriteStream;
  private buf: string[] = [];
  private bytes = 0;
  private timer?: NodeJS.Timeout;

  constructor(private file: string | undefined, private log: Logger) {
    if (file) this.open();
  }

  private open(): void {
    this.out = fs.createWriteStream(this.file!, { flags: 'a', mode: 0o640 });
    this.out.on('error', (e) => this.log.error({ err: e.message, file: this.file }, 'delivery log: cannot write'));
  }

  write(r: DeliveryRecord): void {
    if (this.out) {
      const line = `${JSON.stringify({ time: new Date().toISOString(), ...r })}\n`;
      this.buf.push(line);
      this.bytes += line.length;
      if (this.bytes >= FLUSH_BYTES) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), FLUSH_MS);
      return;
    }
    // The record travels as a field for log shippers (JSON); on a terminal the pretty format
    // leaves it out and this one short line is what shows.
    this.log.info({ delivery: r }, terminalLine(r));
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.buf.length) return;
    this.out?.write(this.buf.join(''));
    this.buf = [];
    this.bytes = 0;
  }

  /** After logrotate moved the file: start a new one at the configured path. */
  reopen(): void {
    if (!this.file) return;
    this.flush();
    const old = this.out;
    this.open();
    old?.end();
    this.log.info({ file: this.file }, 'delivery log reopened');
  }

  close(): Promise<void> {
    this.flush();
    return new Promise((resolve) => (this.out ? this.out.end(resolve) : resolve()));
  }
}
