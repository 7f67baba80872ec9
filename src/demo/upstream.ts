// A small counting MTA for the demo: accepts any mail, counts it, reports each message.
import { SMTPServer } from 'smtp-server';

export interface DemoUpstream {
  name: string;
  port: number;
  received: number;
  close(): Promise<void>;
}

export function startDemoUpstream(name: string, port: number, onMessage: (u: DemoUpstream, messageId: string, from: string) => void): Promise<DemoUpstream> {
  const up: DemoUpstream = { name, port, received: 0, close: async () => {} };
  const server = new SMTPServer({
    name: `${name}.demo.test`,
    banner: `${name} demo upstream`,
    authOptional: true,
    disabledCommands: ['AUTH'],
    logger: false,
    onData(stream, session, callback) {
      let head = '';
      stream.on('data', (c: Buffer) => {
        if (head.length < 8192) head += c.toString('latin1');
      });
      stream.on('end', () => {
        up.received++;
        const id = /^message-id:\s*(.+)$/im.exec(head)?.[1]?.trim() ?? '(no Message-ID)';
        onMessage(up, id, session.envelope.mailFrom ? session.envelope.mailFrom.address : '<>');
        callback(null, `Message accepted by ${name}`);
      });
    },
  });
  server.on('error', () => {});
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      up.port = (server.server.address() as { port: number }).port;
      up.close = () => new Promise((r) => server.close(() => r()));
      resolve(up);
    });
  });
}
