// Messages put into a Spool directly, for the tests of the spool itself (no listener, no peers).
import fs from 'node:fs';
import { Spool, type StoredBody } from '../../src/spool/spool.js';

/** Queue `body` for one recipient as the listener does: in the index while it fits in memory, else in its file. */
export async function put(spool: Spool, to: string, body: Buffer): Promise<string> {
  const inc = await spool.incoming(body.length);
  await inc.write(body);
  if (!inc.inMemory) await inc.seal();
  return spool.commitIncoming(inc, { sender: 'a@client.test', recipients: [{ address: to, domain: to.split('@')[1], pool: 'out', route: 0 }], listener: 'relay', client: '127.0.0.1' }, null);
}

/** A stored body's bytes, from the index or from its file after its prefix. */
export function read(b: StoredBody): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.concat([b.prefix ?? Buffer.alloc(0), fs.readFileSync(b.file)]);
}
