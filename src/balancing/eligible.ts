// Which servers may take a new connection right now: a pure function of the pool's state.
// Primaries first; backups only when no primary is usable (active-passive, as HAProxy's
// `backup`). "busy" (usable servers exist but all are at max_connections) is kept apart from
// "down" (none usable), because busy means wait and down means fail over.
import { isEjected, slowstartWeight, type Ejection, type HealthState } from '../health/state.js';
import type { Candidate } from './pick.js';

export type AdminState = 'ready' | 'drain' | 'disabled';

export interface ServerView {
  key: string;
  weight: number;
  backup: boolean;
  maxconn?: number;
  active: number;
  current: number;
  admin: AdminState;
  health: HealthState;
  ejection: Ejection;
}

export type Eligibility =
  | { status: 'ok'; indices: number[]; candidates: Candidate[] }
  | { status: 'busy' }
  | { status: 'down' };

export function usable(s: ServerView, now: number): boolean {
  return s.admin === 'ready' && s.health.up && s.weight > 0 && !isEjected(s.ejection, now);
}

export function eligible(servers: readonly ServerView[], now: number, slowstart: number, exclude?: ReadonlySet<string>): Eligibility {
  const ok = (s: ServerView) => usable(s, now) && !exclude?.has(s.key);
  let tier = servers.map((_, i) => i).filter((i) => !servers[i].backup && ok(servers[i]));
  if (tier.length === 0) tier = servers.map((_, i) => i).filter((i) => servers[i].backup && ok(servers[i]));
  if (tier.length === 0) return { status: 'down' };
  const indices = tier.filter((i) => servers[i].maxconn === undefined || servers[i].active < servers[i].maxconn!);
  if (indices.length === 0) return { status: 'busy' };
  const candidates = indices.map((i) => {
    const s = servers[i];
    return { key: s.key, weight: slowstartWeight(s.weight, s.health.since, slowstart, now), active: s.active, current: s.current };
  });
  return { status: 'ok', indices, candidates };
}
