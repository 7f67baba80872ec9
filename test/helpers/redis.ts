// A real redis-server (Debian package) on a free loopback port, without persistence, for
// the cluster tests. Stopped by `stopAll`; `kill` and `restart` (same port, empty data, as a
// Redis without persistence comes back) serve the outage tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort, onStop, portOpen, waitFor } from './peers.js';

export interface RedisPeer {
  port: number;
  url: string;
  kill(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startRedis(): Promise<RedisPeer> {
  const port = await freePort();
  let proc: ChildProcess;
  const launch = async () => {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning', '--enable-debug-command', 'yes'], { stdio: 'ignore' });
    await waitFor(`redis-server on ${port}`, () => portOpen(port), 10_000);
  };
  const end = async (signal: NodeJS.Signals) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((r) => proc.once('exit', r));
    proc.kill(signal);
    await gone;
  };
  await launch();
  const peer: RedisPeer = {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    kill: () => end('SIGKILL'),
    restart: launch,
    stop: () => end('SIGTERM'),
  };
  onStop(() => peer.stop());
  return peer;
}
