// `smtplb demo`: the embedded default. Two counting demo MTAs on loopback, smtplb balancing
// across them, and ready-to-paste commands to try it.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../core/logger.js';
import { Gateway } from '../runtime/gateway.js';
import { startDemoUpstream, type DemoUpstream } from './upstream.js';

export interface DemoOptions { listen?: string; admin?: string }

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

async function pickPort(host: string, preferred: number): Promise<number> {
  if (await portFree(host, preferred)) return preferred;
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, host, () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export async function runDemo(opts: DemoOptions): Promise<void> {
  const host = '127.0.0.1';
  const listenPort = opts.listen ? Number(opts.listen.split(':').pop()) : await pickPort(host, 2525);
  const adminPort = opts.admin ? Number(opts.admin.split(':').pop()) : await pickPort(host, 8025);
  const relayPort = await pickPort(host, 2587);
  const counts = new Map<string, number>();
  const ups: DemoUpstream[] = [];
  const report = (u: DemoUpstream, id: string, from: string) => {
    counts.set(u.name, u.received);
    const all = ups.map((x) => `${x.name}: ${x.received}`).join(', ');
    console.log(`  ${u.name} received ${id} from ${from}   (${all})`);
  };
  for (const name of ['mta1', 'mta2']) ups.push(await startDemoUpstream(name, 0, report));

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtplb-demo-'));
  const file = path.join(dir, 'smtplb.yaml');
  fs.writeFileSync(
    file,
    `# Written by smtplb demo. Copy it as a starting point for your own config.
hostname: demo.smtplb.test
admin: { listen: ${host}:${adminPort}, token: demo-token-123 }
spool: ${path.join(dir, 'spool')}
listeners:
  - { name: passthrough, listen: ${host}:${listenPort}, mode: tcp, pool: demo }
  - { name: relay, listen: ${host}:${relayPort}, mode: smtp, relay_networks: [127.0.0.0/8] }
routes:
  - { pool: demo }
queue: { retry: [10s, 1m, 5m], max_age: 1h }
pools:
  demo:
    balance: roundrobin
    health: { check: smtp, interval: 2s, timeout: 2s, rise: 2, fall: 2 }
    servers:
${ups.map((u) => `      - { name: ${u.name}, address: ${host}:${u.port}, weight: 1 }`).join('\n')}
`,
  );
  const log = createLogger('info', 'auto');
  const gw = new Gateway(loadConfig(file), log);
  await gw.start();

  console.log(`
smtplb demo is running.
  smtp listener  ${host}:${listenPort}  (mode tcp, roundrobin over two demo MTAs)
  smtp relay     ${host}:${relayPort}  (mode smtp: spools, then delivers through the same pool)
  demo MTAs      ${ups.map((u) => `${u.name} ${host}:${u.port}`).join(', ')}
  dashboard      http://${host}:${adminPort}/dashboard#token=demo-token-123
  metrics        http://${host}:${adminPort}/metrics
  status         npx smtplb status -c ${file}
  config         ${file}

Send a message (each demo MTA counts what it receives):
  npx smtplb send --server ${host}:${listenPort} --from demo@example.test --to you@example.test --count 10
  swaks --server ${host}:${listenPort} --from demo@example.test --to you@example.test
Through the queueing relay (250 once the message is on disk, then delivered):
  swaks --server ${host}:${relayPort} --from demo@example.test --to you@example.test

Press Ctrl-C to stop.
`);
  const stop = async () => {
    console.log(`\nstopping; received ${ups.map((u) => `${u.name}: ${u.received}`).join(', ')}`);
    await gw.shutdown();
    await Promise.all(ups.map((u) => u.close()));
    fs.rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}
