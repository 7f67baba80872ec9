// Drains, enables and weight changes of upstream servers: the one place an operator's change is
// applied and handed on, and the one place a change made elsewhere is followed.
//
// Where the state lives: in each process's pools (memory), as HAProxy's runtime API keeps it;
// a restart forgets it, and a reload keeps it for a server the new config still has (a weight
// change lasts until the reload). What hands a change on is the process's `ServerShare`, one of
// the control store's backends (control/types.ts):
// - a single node: nothing (its pools are the whole store);
// - the primary of `workers: N`: its workers, over IPC (runtime/process.ts broadcasts it);
// - a node of a cluster: Redis (cluster/cluster.ts `putServer`, the `servers` hash), which every
//   node reads back on each sync and follows here. A node with workers writes the primary's
//   changes through its first worker, and that worker passes the cluster's on to the primary,
//   which is the node's authority for its workers and its admin API.
import type { AdminState } from '../balancing/eligible.js';

export type ServerAction = AdminState | { weight: number };

/** A server's run-time state as the control store shares it. */
export interface ServerState {
  pool: string;
  server: string;
  admin: AdminState;
  /** The run-time weight, or null for the configured one. */
  weight: number | null;
  at: number;
  by: string;
}

/** What the decisions here read of a server. */
export interface ServerView {
  admin: AdminState;
  weight: number;
  configuredWeight: number;
}

/** The state to share for a server as it is now: a weight equal to the configured one is null, so a reload that changes it is followed. */
export function stateOf(pool: string, server: string, s: ServerView, by: string, at: number): ServerState {
  return { pool, server, admin: s.admin, weight: s.weight === s.configuredWeight ? null : s.weight, at, by };
}

/** The actions that bring `s` to `st` (the weight first), none when it is there already. */
export function actionsToward(s: ServerView, st: Pick<ServerState, 'admin' | 'weight'>): ServerAction[] {
  const out: ServerAction[] = [];
  const weight = st.weight ?? s.configuredWeight;
  if (s.weight !== weight) out.push({ weight });
  if (s.admin !== st.admin) out.push(st.admin);
  return out;
}

/** The history line an action leaves (`smtplb status`, the dashboard). */
export function describeAction(a: ServerAction): { event: string; detail: string | null } {
  return typeof a === 'string' ? { event: a === 'ready' ? 'enable' : a, detail: null } : { event: 'weight', detail: `weight ${a.weight}` };
}

/** Where a change made in this process goes next: best effort, never throws (a store out of reach logs it). */
export interface ServerShare {
  putServer(s: ServerState): void;
}

export interface ServerHost {
  find(pool: string, server: string): ServerView | undefined;
  /** Apply one action to this process's pools (and leave its history line). */
  apply(pool: string, server: string, action: ServerAction): void;
  /** This node's name in what it shares. */
  node(): string;
}

const same = (a: ServerState, b: ServerState) => a.at === b.at && a.by === b.by && a.admin === b.admin && a.weight === b.weight;

export class ServerControl {
  /**
   * Changes made at this node that the store has not shown yet, by `pool/server`. The last
   * change wins by its time stamp (`at`; the nodes' clocks are assumed in step, as the leases
   * already assume): a store read older than the change (it began before the write landed, or
   * the write is still waiting for the first worker to start) does not undo it, not even for
   * one sync; a newer change made elsewhere is followed. Bounded by the number of servers.
   */
  private pending = new Map<string, ServerState>();

  constructor(
    private host: ServerHost,
    private share: () => ServerShare | undefined,
    private now: () => number = Date.now,
  ) {}

  /** An operator's change here: applied, then handed on. False when there is no such server. */
  change(pool: string, server: string, action: ServerAction): boolean {
    const s = this.host.find(pool, server);
    if (!s) return false;
    this.host.apply(pool, server, action);
    const share = this.share();
    if (!share) return true;
    const state = this.state(pool, server)!;
    this.expect(state);
    share.putServer(state);
    return true;
  }

  /** A change the store is about to show (made here, or at this worker's primary): older reads of the store do not undo it. */
  expect(state: ServerState): void {
    if (this.pending.size >= 10_000) this.pending.clear();
    this.pending.set(`${state.pool}/${state.server}`, state);
  }

  /** Changes made here that the store has not shown yet (the primary hands them to its first worker again when it starts). */
  unconfirmed(): ServerState[] {
    return [...this.pending.values()];
  }

  /** The state to hand on for a server as it is here now. */
  state(pool: string, server: string): ServerState | undefined {
    const s = this.host.find(pool, server);
    return s && stateOf(pool, server, s, this.host.node(), this.now());
  }

  /** States read from the store (another node's or the primary's changes): each server brought to its state here. */
  follow(states: readonly ServerState[]): ServerState[] {
    const changed: ServerState[] = [];
    for (const st of states) {
      const s = this.host.find(st.pool, st.server);
      if (!s) continue;
      const key = `${st.pool}/${st.server}`;
      const mine = this.pending.get(key);
      if (mine) {
        if (!same(mine, st) && st.at <= mine.at) continue; // older than the change made here
        this.pending.delete(key);
      }
      const actions = actionsToward(s, st);
      for (const a of actions) this.host.apply(st.pool, st.server, a);
      if (actions.length) changed.push(st);
    }
    return changed;
  }
}
