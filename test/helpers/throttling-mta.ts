// An upstream MTA that throttles like a big receiver: it answers `421 4.7.0 Try again later`
// to every Nth message. No Debian MTA can be told to do that on a count (smtp-sink's -Q hits
// every message), so this one is built on smtp-server, the same SMTP engine the product uses
// inbound; everything else in these tests talks to real peers.
import { SMTPServer } from 'smtp-server';
import { freePort, onStop } from './peers.js';

export interface ThrottlingMta {
  port: number;
  accepted: string[];
  refused: number;
  /** Stop throttling (the receiver has recovered). */
  recover(): void;
}

export async function startThrottlingMta(every: number, text = '4.7.0 Try again later, rate limited'): Promise<ThrottlingMta> {
  const port = await freePort();
  let n = 0;
  let throttling = true;
  const mta: ThrottlingMta = { port, accepted: [], refused: 0, recover: () => (throttling = false) };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, _session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (throttling && ++n % every === 0) {
          mta.refused++;
          return cb(Object.assign(new Error(text), { responseCode: 421 }));
        }
        mta.accepted.push(Buffer.concat(chunks).toString('latin1'));
        cb(null);
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  onStop(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return mta;
}
