// The counters a listener reports to: the narrow part of the metrics registry that listeners
// need, declared here so that listeners import nothing of admin. The admin's `Metrics` (a
// prom-client registry) satisfies it; a test may pass anything with the same shape.
import type { Counter, Gauge, Histogram, Labelled } from '../core/metric-shapes.js';

export interface ListenerCounters {
  listenerConnections: Labelled<Counter>;
  listenerActive: Labelled<Gauge>;
  /** By listener and reason (max_connections, relay_denied, too_big, no_server, ...). */
  listenerRejected: Labelled<Counter>;
  listenerSessions: Labelled<Counter>;
  listenerMessages: Labelled<Counter>;
  listenerRecipientsRejected: Labelled<Counter>;
  /** Recipients found on the suppression list, by listener and action (refuse, drop). */
  listenerSuppressed: Labelled<Counter>;
  /** mode: tcp: bytes by direction, connection ends by reason, upstream connects. */
  proxyBytes: Labelled<Counter>;
  proxyEnds: Labelled<Counter>;
  serverConnections: Labelled<Counter>;
  serverConnectFailures: Labelled<Counter>;
  connectSeconds: Labelled<Histogram>;
}
