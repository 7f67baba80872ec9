// A small SMTP client on one connection for the benchmarks (soak, queue-scale): commands one
// at a time, replies parsed as they come (multi-line included), a time limit on each reply.
// Written here rather than with nodemailer so a benchmark sees exactly what it sends, and can
// tell "refused before the body" from "no reply after the final dot" (the soak counts both).
import net from 'node:net';

export interface Reply { code: number; text: string }

export class SmtpConn {
  private buf = '';
  private lines: string[] = [];
  private waiting?: { resolve: (r: Reply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };
  private dead?: Error;
  sent = 0;

  private constructor(private sock: net.Socket) {
    sock.setEncoding('latin1');
    sock.setNoDelay(true);
    sock.on('data', (c: string) => {
      this.buf += c;
      let i: number;
      while ((i = this.buf.indexOf('\r\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        this.lines.push(line);
        if (line[3] !== '-') {
          const text = this.lines.join('\n');
          this.lines = [];
          const w = this.waiting;
          this.waiting = undefined;
          if (w) {
            clearTimeout(w.timer);
            w.resolve({ code: Number(line.slice(0, 3)), text });
          }
        }
      }
    });
    const fail = (e: Error) => {
      this.dead ??= e;
      const w = this.waiting;
      this.waiting = undefined;
      if (w) {
        clearTimeout(w.timer);
        w.reject(e);
      }
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new Error('connection closed')));
  }

  static async open(port: number, helo = 'client.bench.test'): Promise<SmtpConn> {
    const sock = net.connect({ host: '127.0.0.1', port });
    const c = new SmtpConn(sock);
    const greeting = c.reply();
    await new Promise<void>((res, rej) => {
      sock.once('connect', () => res());
      sock.once('error', rej);
    });
    c.expect(await greeting, 220, 'greeting');
    c.expect(await c.cmd(`EHLO ${helo}`), 250, 'EHLO');
    return c;
  }

  private reply(timeoutMs = 120_000): Promise<Reply> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(new Error('reply timeout'));
        this.sock.destroy();
      }, timeoutMs);
      this.waiting = { resolve, reject, timer };
    });
  }

  expect(r: Reply, code: number, what: string): void {
    if (r.code !== code) throw Object.assign(new Error(`${what}: ${r.text}`), { reply: r });
  }

  cmd(line: string): Promise<Reply> {
    const r = this.reply();
    this.sock.write(`${line}\r\n`);
    return r;
  }

  /** Before the final dot: failures mean "not taken". After it: the reply, or a thrown error meaning "unknown". */
  async transaction(from: string, to: string, data: Buffer): Promise<{ stage: 'envelope'; reply: Reply } | { stage: 'dot'; reply: Reply }> {
    const m = await this.cmd(`MAIL FROM:<${from}>`);
    if (m.code !== 250) return { stage: 'envelope', reply: m };
    const r = await this.cmd(`RCPT TO:<${to}>`);
    if (r.code !== 250) {
      await this.cmd('RSET');
      return { stage: 'envelope', reply: r };
    }
    const d = await this.cmd('DATA');
    if (d.code !== 354) {
      await this.cmd('RSET');
      return { stage: 'envelope', reply: d };
    }
    if (this.dead) throw new Error(`before the body: ${this.dead.message}`);
    const fin = this.reply();
    this.sock.write(data);
    this.sent++;
    try {
      return { stage: 'dot', reply: await fin };
    } catch (e) {
      throw Object.assign(new Error((e as Error).message), { afterDot: true });
    }
  }

  /** One message, every step expected to succeed (250, 250, 354, 250); `data` without the final dot. */
  async send(from: string, to: string, data: Buffer): Promise<void> {
    this.expect(await this.cmd(`MAIL FROM:<${from}>`), 250, 'MAIL FROM');
    this.expect(await this.cmd(`RCPT TO:<${to}>`), 250, 'RCPT TO');
    this.expect(await this.cmd('DATA'), 354, 'DATA');
    const r = this.reply();
    this.sock.write(Buffer.concat([data, Buffer.from('.\r\n')]));
    this.expect(await r, 250, 'the final dot');
  }

  async quit(): Promise<void> {
    await this.cmd('QUIT').catch(() => undefined);
    this.sock.destroy();
  }

  destroy(): void {
    this.sock.destroy();
  }
}

