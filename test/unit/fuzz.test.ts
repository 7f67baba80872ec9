// Property-based fuzzing (fast-check) of what operators and strangers feed smtplb, the pure
// parts: the PROXY v1/v2 parser and the config loader. The suite runs a bounded number of cases
// (FUZZ_RUNS, 100 by default); `npm run fuzz` runs many more. Inputs that once broke something
// stay below as regression cases. SMTP and the admin API against a live process are in
// test/fuzz.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { encodeV1, encodeV2, parseProxyHeader } from '../../src/protocol/proxy-protocol.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 100);

test('PROXY parser: any bytes give done, more or error, never a throw; encoded headers round-trip', () => {
  const ip4 = fc.ipV4();
  const ip6 = fc.ipV6();
  const port16 = fc.integer({ min: 0, max: 65535 });
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      const r = parseProxyHeader(Buffer.from(bytes));
      assert.ok(['done', 'more', 'error'].includes(r.state));
    }),
    { numRuns: RUNS * 20 },
  );
  fc.assert(
    fc.property(fc.oneof(fc.tuple(fc.constant(4 as const), ip4, ip4), fc.tuple(fc.constant(6 as const), ip6, ip6)), port16, port16, fc.constantFrom('v1', 'v2'), fc.uint8Array({ maxLength: 40 }), ([family, source, dest], sourcePort, destPort, v, rest) => {
      const a = { family, source, dest, sourcePort, destPort };
      const header = v === 'v1' ? encodeV1(a) : encodeV2(a);
      const r = parseProxyHeader(Buffer.concat([header, Buffer.from(rest)]));
      assert.equal(r.state, 'done', JSON.stringify(r));
      if (r.state === 'done') assert.deepEqual([r.addresses?.sourcePort, r.addresses?.destPort, Buffer.from(r.rest).length], [sourcePort, destPort, rest.length]);
      // Cut anywhere before its end: never done, never a throw.
      const cut = parseProxyHeader(header.subarray(0, Math.max(0, header.length - 1 - (sourcePort % header.length))));
      assert.notEqual(cut.state, 'done');
    }),
    { numRuns: RUNS * 5 },
  );
});

const goodConfig = `hostname: gw.test
spool: ./spool
listeners:
  - { name: relay, listen: 127.0.0.1:2525, mode: smtp, relay_networks: [127.0.0.0/8] }
  - { name: l4, listen: 127.0.0.1:2526, mode: tcp, pool: relays }
pools:
  relays:
    balance: roundrobin
    health: { check: smtp, interval: 1s, timeout: 2s, rise: 2, fall: 2 }
    servers:
      - { name: mta1, address: 127.0.0.1:2601, weight: 2 }
routes:
  - { domains: [gmail.com, "*.gmail.com"], pool: relays }
  - { pool: relays }
shaping:
  gmail.com: { concurrency: 10, rate: 600/min }
backoff: { patterns: ["mailbox busy"] }
queue: { retry: [1m, 5m], max_age: 5d, min_free: 100MB }
`;

test('config regression: an unquoted *.domain (a YAML alias) is a ConfigError with a hint, not a stack trace', () => {
  assert.throws(() => parseConfig(goodConfig.replace('"*.gmail.com"', '*.gmail.com'), '/fuzz/smtplb.yaml'), (e: Error) => e instanceof ConfigError && /quote it/.test(e.message));
});

test('config loader: any edit of a valid file loads or is refused with a ConfigError naming the file, never another error', () => {
  const edit = fc.tuple(fc.nat({ max: goodConfig.length }), fc.nat({ max: 20 }), fc.string({ maxLength: 12, unit: fc.constantFrom(...'{}[]:,-"\' \n\tabc0123456789*.&!|>#%@x'.split('')) }));
  fc.assert(
    fc.property(fc.array(edit, { minLength: 1, maxLength: 4 }), (edits) => {
      let text = goodConfig;
      for (const [at, del, ins] of edits) text = text.slice(0, at) + ins + text.slice(at + del);
      try {
        parseConfig(text, '/fuzz/smtplb.yaml');
      } catch (e) {
        assert.ok(e instanceof ConfigError, `not a ConfigError: ${(e as Error).stack}`);
        assert.match((e as Error).message, /\/fuzz\/smtplb\.yaml/);
      }
    }),
    { numRuns: RUNS * 10 },
  );
});
