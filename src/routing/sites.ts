// MX sites: the receiving infrastructure behind a recipient domain. Providers limit per
// infrastructure, not per domain (every Google Workspace domain is Gmail behind *.google.com
// MX hosts), so a shaping rule may name a site (`shaping: { site:google: ... }`) and hold
// across every domain on it. A domain's site is the sorted set of its MX host names, each
// reduced by the site rules (`sites:` in the config over the shipped PROVIDER_SITES): when
// every host falls under one named site, that is the site; otherwise the site is the host
// names themselves, sorted and joined with commas (two domains with the same MX hosts share
// it, as KumoMTA's mx_rollup does). Pure functions.

/** "*.google.com" matches names ending in ".google.com"; any other pattern matches exactly. */
export function hostMatches(pattern: string, host: string): boolean {
  const p = pattern.toLowerCase().replace(/\.$/, '');
  const h = host.toLowerCase().replace(/\.$/, '');
  return p.startsWith('*.') ? h.endsWith(p.slice(1)) && h.length > p.length - 1 : h === p;
}

/** The named site one MX host belongs to, if a rule covers it (the longest pattern wins). */
export function siteOfHost(host: string, rules: Record<string, string[]>): string | undefined {
  let best: { site: string; len: number } | undefined;
  for (const [site, patterns] of Object.entries(rules)) {
    for (const p of patterns) if (hostMatches(p, host) && (!best || p.length > best.len)) best = { site, len: p.length };
  }
  return best?.site;
}

/** A destination's site from its MX host names (null when it has none). */
export function siteOf(hosts: string[], rules: Record<string, string[]>): string | null {
  const names = [...new Set(hosts.map((h) => h.toLowerCase().replace(/\.$/, '')).filter(Boolean))].sort();
  if (!names.length) return null;
  const reduced = [...new Set(names.map((h) => siteOfHost(h, rules) ?? h))].sort();
  return reduced.join(',');
}

/** The shaping key of a site: what `shaping:` entries, pairs and suspensions name it by. */
export const siteKey = (site: string): string => `site:${site}`;
