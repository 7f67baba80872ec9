// The operator's control records: a suspension (no delivery to a destination of a pool until a
// time) and an override (temporary shaping limits in place of the configured ones). They are
// plain data, the same in every store that keeps them: the node's spool (SQLite), the primary
// of a node's workers (workers-store.json) and a cluster's Redis.

import type { ServerShare } from './servers.js';

export interface Suspension { id: string; pool: string; destination: string; until: number; reason: string; who: string; created: number }

/** An operator's temporary shaping limits for (pool, destination), replacing the configured ones. */
export interface Override extends Suspension { concurrency: number | null; rate: string | null }

/**
 * Where the operator's state is kept, written through one interface so that each operation is
 * written once above it: suspend, cancel, add and cancel an override (scheduler/shaper.ts), and
 * drain, enable, disable or re-weight a server (control/servers.ts). Three backends: the node's
 * own spool (spool/control-tables.ts, SQLite), and the shared store of cluster/cluster.ts, which
 * is the primary's memory over IPC under `workers:` or Redis in a cluster (a suspension or
 * override the shared store cannot take is refused, not kept on one node; a server's state is
 * best effort, applied here at once). Backoff state and warm-up counts sit behind the sibling
 * interface `SharedLimits` (cluster/cluster.ts), with one pure admission function
 * (control/admission.ts) for the same three backends.
 */
export interface ControlStore extends ServerShare {
  putSuspension(s: Suspension): Promise<void>;
  removeSuspension(id: string): Promise<unknown>;
  putOverride(o: Override): Promise<void>;
  removeOverride(id: string): Promise<unknown>;
}
