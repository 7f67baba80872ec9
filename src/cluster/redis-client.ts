// A Redis client, loaded only where Redis is configured (a cluster, or a suppression list shared
// through it): ioredis is the heaviest import of the daemon (about 0.15 s of CPU at each start),
// and most nodes never use it. ioredis is CommonJS, so it can be required on first use without
// making the constructors that need a client asynchronous.
import { createRequire } from 'node:module';
import type { Redis, RedisOptions } from 'ioredis';

const require = createRequire(import.meta.url);

export type { Redis };

export function newRedis(url: string, options: RedisOptions): Redis {
  const { Redis: Client } = require('ioredis') as typeof import('ioredis');
  return new Client(url, options);
}
