// The README's first command: `npx smtplb demo` comes up, and the commands it prints work.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, test } from 'node:test';
import { freePort, ROOT, run, stopAll, onStop, waitFor } from './helpers/peers.js';

after(stopAll);

test('smtplb demo: the printed smtplb send and swaks commands get 250 and the demo MTAs count them', async () => {
  const port = await freePort();
  const admin = await freePort();
  const demo = spawn('npx', ['smtplb', 'demo', '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${admin}`], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  demo.stdout.on('data', (c) => (out += c));
  demo.stderr.on('data', (c) => (out += c));
  onStop(() => {
    try {
      process.kill(-demo.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
  });
  await waitFor(`demo ready\n${out}`, () => out.includes('Press Ctrl-C'), 30_000);
  const sendLine = /^\s*(npx smtplb send .+)$/m.exec(out)?.[1];
  const swaksLine = /^\s*(swaks .+)$/m.exec(out)?.[1];
  assert.ok(sendLine && swaksLine, out);

  const send = await run('sh', ['-c', `cd ${ROOT} && ${sendLine}`]);
  assert.equal(send.code, 0, send.stdout + send.stderr);
  assert.match(send.stdout, /250 Message accepted by mta[12]/);
  assert.match(send.stdout, /10 accepted, 0 failed/);

  const sw = await run('sh', ['-c', swaksLine]);
  assert.equal(sw.code, 0, sw.stdout + sw.stderr);
  assert.match(sw.stdout, /<- {2}250 Message accepted by mta[12]/);

  // The demo MTAs count what they received: 11 in all, both used.
  await waitFor('demo counts', () => /\(mta1: (\d+), mta2: (\d+)\)/g.test(out) && [...out.matchAll(/\(mta1: (\d+), mta2: (\d+)\)/g)].some((m) => Number(m[1]) + Number(m[2]) === 11), 10_000);
  const last = [...out.matchAll(/\(mta1: (\d+), mta2: (\d+)\)/g)].pop()!;
  assert.ok(Number(last[1]) >= 5 && Number(last[2]) >= 5, `both demo MTAs used: ${last[0]}`);

  // The relay line and the dashboard the demo prints work too.
  const relayLine = [...out.matchAll(/^\s*(swaks .+)$/gm)][1]?.[1];
  assert.ok(relayLine, out);
  const rl = await run('sh', ['-c', relayLine]);
  assert.match(rl.stdout, /<- {2}250 2\.0\.0 Ok: queued as \w+/, rl.stdout);
  await waitFor('relayed message at a demo MTA', () => [...out.matchAll(/\(mta1: (\d+), mta2: (\d+)\)/g)].some((m) => Number(m[1]) + Number(m[2]) === 12), 10_000);
  const dash = /dashboard\s+(http:\S+)#token=(\S+)/.exec(out)!;
  assert.match(await (await fetch(dash[1])).text(), /<title>smtplb dashboard<\/title>/);
  const st = (await (await fetch(new URL('/api/status', dash[1]), { headers: { authorization: `Bearer ${dash[2]}` } })).json()) as { pools: { servers: { name: string; up: boolean }[] }[] };
  assert.deepEqual(st.pools[0].servers.map((s) => s.name), ['mta1', 'mta2']);

  process.kill(-demo.pid!, 'SIGINT');
  await waitFor('demo stopped', () => demo.exitCode !== null || demo.signalCode !== null, 10_000);
  assert.match(out, /stopping; received mta1: \d+, mta2: \d+/);
});
