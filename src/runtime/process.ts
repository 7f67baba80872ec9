// Runs smtplb in the foreground: one process, or a primary with worker processes sharing the
// listening sockets. Signals: SIGHUP reloads, SIGTERM/SIGINT drain and exit.
import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/load.js';
import { Gateway } from './gateway.js';

export async function runProcess(loaded: LoadedConfig, log: Logger): Promise<void> {
  const gw = new Gateway(loaded, log);
  await gw.start();
  process.on('SIGHUP', () => void gw.reload());
  const stop = async (sig: string) => {
    log.info(`${sig}: no longer accepting, draining sessions (up to ${loaded.config.shutdown_timeout}ms)`);
    await gw.shutdown();
    log.info('stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
}
