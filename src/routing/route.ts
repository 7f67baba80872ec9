// Route choice as a pure function: the first route whose every given key matches wins
// (as Postfix transport maps and HAProxy ACLs read, top to bottom). Domain patterns:
// "example.com" exact, "*.example.com" its subdomains only, ".example.com" its subdomains
// (Postfix transport-map style, with parent_domain_matches_subdomains off).

export interface RouteRule {
  domains?: string[];
  class?: string;
  sender_domains?: string[];
  user?: string;
  listener?: string;
  pool: string;
}

export interface RouteQuery {
  /** Recipient domain, any case. */
  domain: string;
  class?: string;
  senderDomain?: string;
  user?: string;
  listener?: string;
}

export interface RouteChoice {
  index: number;
  rule: RouteRule;
  why: string[];
}

export function domainMatches(pattern: string, domain: string): boolean {
  const p = pattern.toLowerCase().replace(/\.$/, '');
  const d = domain.toLowerCase().replace(/\.$/, '');
  if (p === '*') return true;
  if (p.startsWith('*.')) return d.endsWith(p.slice(1));
  if (p.startsWith('.')) return d.endsWith(p);
  return d === p;
}

/** Every reason a rule matches, or null at the first key that does not. */
export function matchRule(rule: RouteRule, q: RouteQuery): string[] | null {
  const why: string[] = [];
  if (rule.domains) {
    const hit = rule.domains.find((p) => domainMatches(p, q.domain));
    if (!hit) return null;
    why.push(`recipient domain ${q.domain} matches ${hit}`);
  }
  if (rule.class !== undefined) {
    if (rule.class !== q.class) return null;
    why.push(`class is ${q.class}`);
  }
  if (rule.sender_domains) {
    const hit = q.senderDomain !== undefined ? rule.sender_domains.find((p) => domainMatches(p, q.senderDomain!)) : undefined;
    if (!hit) return null;
    why.push(`sender domain ${q.senderDomain} matches ${hit}`);
  }
  if (rule.user !== undefined) {
    if (rule.user !== q.user) return null;
    why.push(`authenticated user is ${q.user}`);
  }
  if (rule.listener !== undefined) {
    if (rule.listener !== q.listener) return null;
    why.push(`received on listener ${q.listener}`);
  }
  if (why.length === 0) why.push('default route (no match keys)');
  return why;
}

export function chooseRoute(rules: readonly RouteRule[], q: RouteQuery): RouteChoice | null {
  for (let i = 0; i < rules.length; i++) {
    const why = matchRule(rules[i], q);
    if (why) return { index: i, rule: rules[i], why };
  }
  return null;
}

export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}

