// How many worker processes `workers:` means on this machine: its own module so that the relay
// (which takes its share of node-wide limits) and the process supervisor read it the same way
// without importing each other.
import os from 'node:os';

export function workerCount(setting: number | 'auto'): number {
  return setting === 'auto' ? Math.max(1, os.availableParallelism()) : setting;
}
