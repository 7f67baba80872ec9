// The operator's control records: a suspension (no delivery to a destination of a pool until a
// time) and an override (temporary shaping limits in place of the configured ones). They are
// plain data, the same in every store that keeps them: the node's spool (SQLite), the primary
// of a node's workers (workers-store.json) and a cluster's Redis.

export interface Suspension { id: string; pool: string; destination: string; until: number; reason: string; who: string; created: number }

/** An operator's temporary shaping limits for (pool, destination), replacing the configured ones. */
export interface Override extends Suspension { concurrency: number | null; rate: string | null }

/**
 * Where suspensions and overrides are kept, written through one interface so that each
 * operation (scheduler/shaper.ts: suspend, cancel, add and cancel an override) is written once
 * above it. Three backends: the node's own spool (spool/control-tables.ts, SQLite), and the
 * shared store of cluster/cluster.ts, which is the primary's memory over IPC under `workers:`
 * or Redis in a cluster (a change the shared store cannot take is refused, not kept on one node).
 */
export interface ControlStore {
  putSuspension(s: Suspension): Promise<void>;
  removeSuspension(id: string): Promise<unknown>;
  putOverride(o: Override): Promise<void>;
  removeOverride(id: string): Promise<unknown>;
}
