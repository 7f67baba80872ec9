// The shapes of prom-client's labelled series, as the data path uses them: the parts that report
// (listeners, the delivery agent) declare the counters they need with these, and import nothing
// of admin; the admin's `Metrics` satisfies them.
export interface Counter { inc(n?: number): void }
export interface Gauge { inc(): void; dec(): void; set(v: number): void }
export interface Histogram { observe(v: number): void }
export interface Labelled<T> { labels(...values: string[]): T }
