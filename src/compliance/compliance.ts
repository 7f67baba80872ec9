// The compliance gate at send time (`compliance: { mode, classes }`): before a bulk message is
// handed to the delivery agent, its sending identity is read from the doctor's last run (this
// relay's own IdentityMonitor, every `doctor.interval`, again after a reload). In `hold` mode a
// message that fails (gate.ts) waits in the queue, its reason as its `wait` (queue show), and is
// looked at again every `recheck`: once the records are fixed (the next doctor run sees them)
// it goes, without a restart; an operator's `smtplb queue release ID` lets one go despite them.
// It is never bounced for it: the message only waits, and max_age still applies. In `warn` mode
// it goes, and the problem is logged (once per domain every 10 minutes) and shown in status.
// Also counted: messages delivered per sending domain per provider site today, against the
// providers' 5,000-a-day bulk-sender line.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { IdentityMonitor } from '../identity/monitor.js';
import { awaitFirstCheck, BULK_SENDER_DAILY, complianceProblem, dayOf, FIRST_CHECK_WAIT_MS } from './gate.js';

const WARN_EVERY_MS = 600_000;
const MAX_KEYS = 10_000;
const MAX_RELEASED = 10_000;

export class ComplianceGate {
  private monitor?: IdentityMonitor;
  private seen?: Config;
  private warned = new Map<string, number>();
  /** Problems found lately per sending domain (for status), newest last. */
  private problems = new Map<string, { reason: string; at: number; held: boolean }>();
  private daily = new Map<string, { day: number; n: number }>();
  /** Messages an operator released (kept in memory: after a restart they wait again until released or fixed). */
  private released = new Set<string>();

  constructor(private config: () => Config, private log: Logger) {}

  /** The process's own identity monitor (the gateway's, where it runs one): read instead of running a second. */
  private shared?: IdentityMonitor;

  useMonitor(monitor: IdentityMonitor): void {
    this.shared = monitor;
    this.monitor?.stop();
    this.monitor = undefined;
  }

  /** Follow the config: a monitor while `compliance:` is set, checked again after a reload. */
  private follow(): IdentityMonitor | undefined {
    const cfg = this.config();
    if (this.shared) return cfg.compliance ? this.shared : undefined;
    if (cfg === this.seen) return this.monitor;
    this.seen = cfg;
    if (!cfg.compliance) {
      this.monitor?.stop();
      this.monitor = undefined;
      return undefined;
    }
    if (this.monitor) this.monitor.rerun();
    else {
      this.monitor = new IdentityMonitor(this.config, this.log);
      this.monitor.start();
    }
    return this.monitor;
  }

  /** The scheduler's question for a message about to go through `pool`: wait (why, until when), or go. */
  holdFor(m: { id: string; sender: string; class: string | null }, pool: string, now = Date.now()): { reason: string; until: number } | null {
    const monitor = this.follow();
    const c = this.config().compliance;
    if (!c || !monitor || !m.class || !c.classes.includes(m.class) || this.released.has(m.id)) return null;
    const facts = monitor.status();
    // Not checked yet (just started or reloaded): bulk mail waits for the first answer in hold
    // mode, looked at again every few seconds; when that run failed, nothing is held for it.
    if (!facts.checked_at) {
      if (c.mode === 'hold' && awaitFirstCheck(facts)) return { reason: 'compliance: the first identity check (smtplb doctor) is still running', until: now + Math.min(c.recheck, FIRST_CHECK_WAIT_MS) };
      if (facts.last_error) this.remember(this.problems, '(identity check)', { reason: `not gated: the identity check failed (${facts.last_error.slice(0, 160)})`, at: now, held: false });
      return null;
    }
    this.problems.delete('(identity check)');
    const domain = m.sender.slice(m.sender.lastIndexOf('@') + 1).toLowerCase();
    const problem = complianceProblem(domain, pool, facts);
    if (!problem) {
      this.problems.delete(domain);
      return null;
    }
    this.remember(this.problems, domain, { reason: problem, at: now, held: c.mode === 'hold' });
    if (c.mode === 'warn') {
      if (now - (this.warned.get(domain) ?? 0) >= WARN_EVERY_MS) {
        this.remember(this.warned, domain, now);
        this.log.warn({ sender_domain: domain, class: m.class }, `compliance (warn): bulk mail from ${domain} sent although ${problem}`);
      }
      return null;
    }
    return { reason: `${problem}; waits until the records are fixed (smtplb doctor) or it is released`, until: now + c.recheck };
  }

  /** An operator lets a message go despite its sender's records. True when the gate holds such a message. */
  release(id: string): boolean {
    if (!this.config().compliance) return false;
    if (this.released.size >= MAX_RELEASED) this.released.delete(this.released.values().next().value!);
    this.released.add(id);
    return true;
  }

  /** A bulk-class message delivered: today's count per sending domain and provider site. */
  delivered(m: { sender: string; class: string | null }, site: string | null, now = Date.now()): void {
    const c = this.config().compliance;
    if (!c || !m.class || !c.classes.includes(m.class)) return;
    const key = `${m.sender.slice(m.sender.lastIndexOf('@') + 1).toLowerCase()}|${site ?? 'other'}`;
    const d = this.daily.get(key);
    if (d && d.day === dayOf(now)) d.n++;
    else this.remember(this.daily, key, { day: dayOf(now), n: 1 });
  }

  private remember<V>(map: Map<string, V>, key: string, value: V): void {
    map.delete(key);
    map.set(key, value);
    while (map.size > MAX_KEYS) map.delete(map.keys().next().value!);
  }

  /** For /api/status: the mode, the domains whose bulk mail waits (or would), and today's counts per site. */
  status(now = Date.now()) {
    const c = this.config().compliance;
    if (!c) return undefined;
    const today = dayOf(now);
    return {
      mode: c.mode,
      classes: c.classes,
      domains: [...this.problems].filter(([, p]) => now - p.at < 2 * c.recheck + 60_000).map(([domain, p]) => ({ domain, held: p.held, reason: p.reason, since: new Date(p.at).toISOString() })),
      daily: [...this.daily].filter(([, d]) => d.day === today).map(([key, d]) => {
        const [domain, site] = key.split('|');
        return { sender_domain: domain, site, today: d.n, bulk_sender: d.n >= BULK_SENDER_DAILY };
      }).sort((a, b) => b.today - a.today).slice(0, 100),
    };
  }

  stop(): void {
    this.monitor?.stop();
  }
}
