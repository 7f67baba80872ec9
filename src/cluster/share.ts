// What a node may do on its own when the cluster's shared store is out of reach: its share
// of each limit, computed from the nodes it last saw. Pure functions over plain data.
import type { ShapingRule } from '../config/schema.js';

/** A node's share of a destination's limits: concurrency and rate divided by the nodes. */
export function shareOfRule(rule: ShapingRule, nodes: number): ShapingRule {
  const n = Math.max(1, Math.floor(nodes));
  if (n === 1) return rule;
  return {
    ...rule,
    ...(rule.concurrency !== undefined ? { concurrency: Math.max(1, Math.floor(rule.concurrency / n)) } : {}),
    ...(rule.rate ? { rate: { count: rule.rate.count / n, perMs: rule.rate.perMs } } : {}),
    ...(rule.connect_rate ? { connect_rate: { count: rule.connect_rate.count / n, perMs: rule.connect_rate.perMs } } : {}),
  };
}

/**
 * Today's warm-up cap for this node while on its own: what the cluster had sent when the
 * store went away, plus this node's share of what was left then. Never more than the cap.
 */
export function shareOfWarmCap(cap: number, sentAtLoss: number, nodes: number): number {
  const n = Math.max(1, Math.floor(nodes));
  return Math.min(cap, sentAtLoss + Math.floor(Math.max(0, cap - sentAtLoss) / n));
}

export interface Heartbeat {
  node: string;
  at: number;
}

/** Nodes heard from within `staleMs` (a node that stopped saying so is not counted). */
export function liveNodes<T extends Heartbeat>(beats: T[], now: number, staleMs: number): T[] {
  return beats.filter((b) => now - b.at <= staleMs).sort((a, b) => a.node.localeCompare(b.node));
}
