// Drains and weights (src/control/servers.ts): an operator's change is applied and handed on
// once; a state read from the store is followed (a null weight is the configured one), and
// following what is already in force changes nothing and leaves no history.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ServerControl, actionsToward, type ServerAction, type ServerState, type ServerView } from '../../src/control/servers.js';

function setup(clock = { t: 1000 }) {
  const servers = new Map<string, ServerView>([['p/a', { admin: 'ready', weight: 3, configuredWeight: 3 }], ['p/b', { admin: 'ready', weight: 1, configuredWeight: 1 }]]);
  const applied: string[] = [];
  const shared: ServerState[] = [];
  const control = new ServerControl(
    {
      find: (pool, server) => servers.get(`${pool}/${server}`),
      apply: (pool, server, action: ServerAction) => {
        const s = servers.get(`${pool}/${server}`)!;
        applied.push(`${server} ${typeof action === 'string' ? action : `weight ${action.weight}`}`);
        if (typeof action === 'string') s.admin = action;
        else s.weight = action.weight;
      },
      node: () => 'n1',
    },
    () => ({ putServer: (s) => void shared.push(s) }),
    () => clock.t,
  );
  return { servers, applied, shared, control };
}

test('an operator change is applied here and handed on with the state it leaves', () => {
  const { control, applied, shared } = setup();
  assert.equal(control.change('p', 'a', { weight: 9 }), true);
  assert.equal(control.change('p', 'a', 'drain'), true);
  assert.deepEqual(applied, ['a weight 9', 'a drain']);
  assert.deepEqual(shared.map(({ at: _, ...s }) => s), [
    { pool: 'p', server: 'a', admin: 'ready', weight: 9, by: 'n1' },
    { pool: 'p', server: 'a', admin: 'drain', weight: 9, by: 'n1' },
  ]);
  // The configured weight again is shared as null: a reload that changes it is then followed.
  control.change('p', 'a', { weight: 3 });
  assert.equal(shared.at(-1)!.weight, null);
  assert.equal(control.change('p', 'nope', 'drain'), false, 'no such server: nothing applied or shared');
  assert.equal(shared.length, 3);
});

test('a state from the store is followed once; a null weight means the configured one; unknown servers are skipped', () => {
  const { control, applied, shared, servers } = setup();
  servers.get('p/b')!.weight = 5;
  const st = (server: string, admin: ServerState['admin'], weight: number | null): ServerState => ({ pool: 'p', server, admin, weight, at: 1, by: 'n2' });
  const changed = control.follow([st('a', 'drain', 4), st('b', 'ready', null), st('zz', 'disabled', null)]);
  assert.deepEqual(applied, ['a weight 4', 'a drain', 'b weight 1']);
  assert.deepEqual(changed.map((s) => s.server), ['a', 'b']);
  assert.deepEqual(control.follow([st('a', 'drain', 4), st('b', 'ready', null)]), [], 'already in force: nothing to do');
  assert.equal(applied.length, 3);
  assert.equal(shared.length, 0, 'what is followed is not handed on again');
  assert.deepEqual(actionsToward({ admin: 'disabled', weight: 2, configuredWeight: 2 }, { admin: 'ready', weight: null }), ['ready']);
});

test("a store read older than this node's own change does not undo it; the store's copy of it, or a newer change elsewhere, is followed", () => {
  const clock = { t: 1000 };
  const { control, applied, servers } = setup(clock);
  control.change('p', 'a', { weight: 7 });
  const weighted = { pool: 'p', server: 'a', admin: 'ready' as const, weight: 7, at: 1000, by: 'n1' };
  clock.t = 1001;
  control.change('p', 'a', 'drain');
  assert.deepEqual(control.unconfirmed().map((s) => `${s.server} ${s.admin} ${s.at}`), ['a drain 1001']);
  // A sync that read the store between the two writes (ready, weight 7), and one older still.
  assert.deepEqual(control.follow([weighted]), []);
  assert.deepEqual(control.follow([{ ...weighted, weight: null, at: 10, by: 'n2' }]), []);
  assert.equal(servers.get('p/a')!.admin, 'drain', 'the newer drain stands');
  assert.equal(servers.get('p/a')!.weight, 7);
  // The store shows the drain written here: nothing to do, and nothing left unconfirmed.
  assert.deepEqual(control.follow([{ ...weighted, admin: 'drain', at: 1001 }]), []);
  assert.deepEqual(control.unconfirmed(), []);
  // Another node's later change is followed; so is a change whose write never showed, once a newer one comes.
  control.change('p', 'b', 'disabled');
  assert.deepEqual(control.follow([{ ...weighted, admin: 'ready', at: 1500, by: 'n2' }, { pool: 'p', server: 'b', admin: 'ready', weight: null, at: 2000, by: 'n2' }]).map((s) => s.server), ['a', 'b']);
  assert.equal(servers.get('p/a')!.admin, 'ready');
  assert.equal(servers.get('p/b')!.admin, 'ready');
  // A change its primary made, as a worker applies it: followed, then expected, so this
  // worker's own older reads of the store do not undo it either.
  const fromPrimary = { pool: 'p', server: 'b', admin: 'drain' as const, weight: null, at: 3000, by: 'n1' };
  control.follow([fromPrimary]);
  control.expect(fromPrimary);
  control.follow([{ pool: 'p', server: 'b', admin: 'ready', weight: null, at: 2000, by: 'n2' }]);
  assert.equal(servers.get('p/b')!.admin, 'drain');
  assert.deepEqual(applied, ['a weight 7', 'a drain', 'b disabled', 'a ready', 'b ready', 'b drain']);
});
