// The operator's control records: a suspension (no delivery to a destination of a pool until a
// time) and an override (temporary shaping limits in place of the configured ones). They are
// plain data, the same in every store that keeps them: the node's spool (SQLite), the primary
// of a node's workers (workers-store.json) and a cluster's Redis.

export interface Suspension { id: string; pool: string; destination: string; until: number; reason: string; who: string; created: number }

/** An operator's temporary shaping limits for (pool, destination), replacing the configured ones. */
export interface Override extends Suspension { concurrency: number | null; rate: string | null }
