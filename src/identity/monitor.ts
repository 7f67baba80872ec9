// The identity checks in the running daemon: the same run as `smtplb doctor`, at start, every
// `doctor.interval` (1 h by default; 0 turns it off) and after each reload, so a DNS change
// that breaks SPF, DKIM or reverse DNS shows in /api/status (`identity`) and in the gauge
// smtplb_identity_problems{domain,check} before receivers start refusing mail. One run at a time;
// a reload during a run asks for another once it ends. Never throws into the daemon.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Report } from './doctor.js';
import { nothingToCheck, onlyReservedNames } from './inventory.js';
import { chooseResolver, createLookup, type Lookup } from './lookup.js';

export const DEFAULT_INTERVAL = 3_600_000;

export class IdentityMonitor {
  private report?: Report;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private again = false;
  private stopped = false;
  private lookup?: Lookup;
  private nextAt: number | null = null;
  private lastError: string | null = null;
  private rows: { domain: string; check: string; problems: number }[] = [];

  constructor(private config: () => Config, private log: Logger) {}

  private get interval(): number {
    return this.config().doctor?.interval ?? DEFAULT_INTERVAL;
  }

  start(): void {
    this.run();
  }

  /** The config changed: check again now (after the run in progress, if any). */
  rerun(): void {
    this.run();
  }

  private run(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.nextAt = null;
    if (this.interval <= 0) return;
    // once() catches its own failures; this catch is the backstop that keeps anything it
    // missed (or a throw from run/schedule) from becoming an unhandled rejection in the daemon.
    this.running = this.once()
      .catch((e: unknown) => this.failed(e))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.run();
        } else this.schedule();
      })
      .catch((e: unknown) => this.failed(e));
  }

  private schedule(): void {
    if (this.stopped || this.interval <= 0) return;
    this.nextAt = Date.now() + this.interval;
    this.timer = setTimeout(() => this.run(), this.interval);
    this.timer.unref();
  }

  private failed(e: unknown): void {
    this.lastError = (e as Error)?.message ?? String(e);
    if (!this.stopped) this.log.warn({ err: e }, `identity check failed: ${this.lastError}`);
  }

  private async once(): Promise<void> {
    const cfg = this.config();
    let lookup: Lookup | undefined;
    try {
      lookup = this.lookup = createLookup(chooseResolver(cfg), { timeout: cfg.doctor?.timeout ?? 2000 });
      const reservedOnly = !chooseResolver(cfg) && onlyReservedNames(cfg);
      if (nothingToCheck(cfg) || reservedOnly) {
        const note = reservedOnly ? 'only reserved names (.test, .example, .invalid, .localhost) and private or documentation addresses, and no resolver configured: not checked' : 'no sending domain and no public egress address in the config';
        this.report = { checked_at: new Date().toISOString(), resolver: lookup.resolver, subjects: [], findings: [], errors: 0, warnings: 0, notes: [note] };
        this.rows = [];
        return;
      }
      // Loaded when there is something to check: the checks bring mailauth, which a daemon without sending domains never needs.
      const { problemRows, runChecks } = await import('./doctor.js');
      const report = await runChecks(cfg, { lookup, timeout: Math.max(5000, cfg.doctor?.timeout ?? 0) });
      if (this.stopped) return;
      this.report = report;
      this.rows = problemRows(report);
      this.lastError = null;
      if (report.errors || report.warnings) {
        this.log.warn({ identity: { errors: report.errors, warnings: report.warnings, problems: report.findings.map((f) => `${f.subject}: ${f.code}`) } }, `identity check: ${report.errors} errors, ${report.warnings} warnings (smtplb doctor shows each with its fix)`);
      } else this.log.info(`identity check: no problems found (${report.subjects.length} domains and egress identities)`);
    } catch (e) {
      this.failed(e);
    } finally {
      lookup?.cancel();
      if (lookup && this.lookup === lookup) this.lookup = undefined;
    }
  }

  /** For /api/status: the last report, with when the next run is due. */
  status() {
    const enabled = this.interval > 0;
    return {
      enabled,
      running: !!this.running,
      next_check_at: this.nextAt === null ? null : new Date(this.nextAt).toISOString(),
      last_error: this.lastError,
      ...(this.report ?? { checked_at: null, resolver: null, subjects: [], findings: [], errors: 0, warnings: 0, notes: [] }),
    };
  }

  /** For smtplb_identity_problems{domain,check}. */
  problems(): { domain: string; check: string; problems: number }[] {
    return this.rows;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.lookup?.cancel();
  }
}
