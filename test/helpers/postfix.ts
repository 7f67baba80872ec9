// The machine's Postfix as a test peer: configured with postconf for the listeners a test
// needs, started, and stopped by the test. Messages it accepts are discarded unless the test
// sets a relayhost; its log goes to a file the test reads.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { onStop, portOpen, waitFor } from './peers.js';

export const POSTFIX_LOG = '/var/log/postfix-smtplb-test.log';

function postconf(...args: string[]): void {
  const r = spawnSync('postconf', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`postconf ${args.join(' ')}: ${r.stderr}`);
}

export interface PostfixListener { port: number; options?: string[] }

export interface Postfix {
  log(): string;
  stop(): void;
}

export async function startPostfix(listeners: PostfixListener[], main: Record<string, string> = {}): Promise<Postfix> {
  spawnSync('postfix', ['stop'], { encoding: 'utf8' });
  // A clean slate: no settings or queued mail left over from an earlier test or bench.
  fs.writeFileSync('/etc/postfix/main.cf', '');
  spawnSync('postsuper', ['-d', 'ALL'], { encoding: 'utf8' });
  const settings: Record<string, string> = {
    compatibility_level: '3.6',
    myhostname: 'postfix.test',
    inet_interfaces: '127.0.0.1',
    inet_protocols: 'ipv4',
    mynetworks: '127.0.0.0/8',
    mydestination: '',
    relayhost: '',
    alias_maps: '',
    alias_database: '',
    local_transport: 'error:no local',
    default_transport: 'discard:',
    relay_transport: 'discard:',
    smtpd_recipient_restrictions: 'permit_mynetworks,reject',
    maillog_file: POSTFIX_LOG,
    smtputf8_enable: 'no',
    ...main,
  };
  postconf('-e', ...Object.entries(settings).map(([k, v]) => `${k}=${v}`));
  // Only our listeners: drop the default port 25 one and any left by an earlier test.
  const services = spawnSync('postconf', ['-M'], { encoding: 'utf8' }).stdout.split('\n');
  for (const line of services) {
    const [name, type] = line.split(/\s+/);
    if (type === 'inet') postconf('-MX', `${name}/inet`);
  }
  postconf('-F', '*/*/chroot = n');
  for (const l of listeners) {
    const opts = (l.options ?? []).map((o) => `-o ${o}`).join(' ');
    postconf('-M', `127.0.0.1:${l.port}/inet=127.0.0.1:${l.port} inet n - n - - smtpd ${opts}`);
  }
  fs.writeFileSync(POSTFIX_LOG, '');
  const r = spawnSync('postfix', ['start'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`postfix start failed: ${r.stderr}`);
  const pf: Postfix = {
    log: () => fs.readFileSync(POSTFIX_LOG, 'utf8'),
    stop: () => void spawnSync('postfix', ['stop'], { encoding: 'utf8' }),
  };
  onStop(pf.stop);
  for (const l of listeners) await waitFor(`postfix on ${l.port}`, () => portOpen(l.port), 15_000);
  return pf;
}
