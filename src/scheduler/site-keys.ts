// Which key a destination's limits are counted under: its MX site's, when a `shaping:` entry
// names that site (`site:google`), else the domain's own. The site comes from the domain's MX
// hosts (routing/sites.ts), looked up through the delivery agent's resolver (its cache is the
// one deliveries use) for direct-to-MX pools and for relay pools with `site_lookup: mx`.
//
// The queue manager asks synchronously; a domain not known yet waits (about 100 ms) while its
// MX is looked up, so no delivery starts outside its site's limits. A known site is kept for a
// minute and then refreshed in the background while the old answer still serves. At most
// MAX_DOMAINS domains are kept (the oldest go first): direct-to-MX sending meets many domains.
import type { Pool } from '../balancing/pool.js';
import type { MxAnswer } from '../discovery/mx.js';
import { siteKey, siteOf } from '../routing/sites.js';

const KEEP_MS = 60_000;
const FAILED_KEEP_MS = 2_000;
const MAX_DOMAINS = 10_000;

export interface SiteKeysContext {
  sites: () => Record<string, string[]>;
  /** The configured shaping rules by key (site rules among them). */
  shaping: () => Record<string, unknown>;
  lookup: (pool: Pool, domain: string) => Promise<MxAnswer>;
}

interface Known { key: string; site: string | null; until: number }

/** Does a shaping entry set limits of its own (concurrency or rate)? */
function ownLimits(rule: unknown): boolean {
  const r = rule as { concurrency?: unknown; rate?: unknown } | undefined;
  return !!r && (r.concurrency !== undefined || r.rate !== undefined);
}

export class SiteKeys {
  private known = new Map<string, Known>();
  private pending = new Set<string>();
  /** Whether the shaping rules in force name any site (worked out once per config, not per pass). */
  private rulesSeen?: Record<string, unknown>;
  private anySite = false;

  constructor(private ctx: SiteKeysContext) {}

  /**
   * Does this pool count this domain's limits per site? Only when some shaping entry names a
   * site, and the domain has no concurrency or rate of its own: `gmail.com: { concurrency: 3 }`
   * beside `site:google` is the operator saying that domain is different (an entry with only
   * messages_per_connection or burst keeps it on its site's limits).
   */
  private usesSites(pool: Pool, domain?: string): boolean {
    if ((pool.cfg.site_lookup ?? (pool.cfg.kind === 'mx' ? 'mx' : 'none')) !== 'mx') return false;
    const rules = this.ctx.shaping();
    if (rules !== this.rulesSeen) {
      this.rulesSeen = rules;
      this.anySite = Object.keys(rules).some((k) => k.startsWith('site:'));
    }
    // The domain's own entry last: asked per destination per pass, only where sites are in use.
    return this.anySite && !(domain !== undefined && ownLimits(rules[domain.toLowerCase()]));
  }

  /** The key for (pool, domain): the domain, a site's key, or null while the MX is looked up. */
  keyFor(pool: Pool, domain: string, now = Date.now()): string | null {
    if (!this.usesSites(pool, domain)) return domain;
    const id = `${pool.name}|${domain.toLowerCase()}`;
    const k = this.known.get(id);
    if (k && k.until <= now) this.refresh(pool, domain, id);
    if (k) return k.key;
    this.refresh(pool, domain, id);
    return null;
  }

  /** The site a domain was found on (for route explain and queue show), if looked up. */
  siteFor(pool: Pool, domain: string): string | null | undefined {
    return this.known.get(`${pool.name}|${domain.toLowerCase()}`)?.site;
  }

  /** The key already known for (pool, domain), without starting a lookup (the domain when none is). */
  knownKey(pool: Pool, domain: string): string {
    if (!this.usesSites(pool, domain)) return domain;
    return this.known.get(`${pool.name}|${domain.toLowerCase()}`)?.key ?? domain;
  }

  /** Look a domain's site up now (route explain), and keep it. */
  async resolve(pool: Pool, domain: string): Promise<{ key: string; site: string | null }> {
    if (!this.usesSites(pool, domain)) return { key: domain, site: null };
    const id = `${pool.name}|${domain.toLowerCase()}`;
    await this.lookup(pool, domain, id);
    const k = this.known.get(id);
    return { key: k?.key ?? domain, site: k?.site ?? null };
  }

  private refresh(pool: Pool, domain: string, id: string): void {
    if (this.pending.has(id)) return;
    this.pending.add(id);
    void this.lookup(pool, domain, id).finally(() => this.pending.delete(id));
  }

  private async lookup(pool: Pool, domain: string, id: string): Promise<void> {
    let answer: MxAnswer;
    try {
      answer = await this.ctx.lookup(pool, domain);
    } catch (e) {
      answer = { ok: false, permanent: false, reason: (e as Error).message };
    }
    const site = answer.ok ? siteOf(answer.targets.map((t) => t.host), this.ctx.sites()) : null;
    const named = site !== null && siteKey(site) in this.ctx.shaping();
    // No answer now: the domain's own limits, and another look soon.
    this.known.delete(id);
    this.known.set(id, { key: named ? siteKey(site) : domain, site, until: Date.now() + (answer.ok ? KEEP_MS : FAILED_KEEP_MS) });
    while (this.known.size > MAX_DOMAINS) this.known.delete(this.known.keys().next().value!);
  }
}
