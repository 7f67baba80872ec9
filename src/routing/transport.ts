// Postfix transport(5) maps, for operators moving from "Postfix + transport maps": each
// `domain smtp:[host]:port` line becomes a route to a one-server pool.

/**
 * Postfix transport(5) lines of the form `domain smtp:[host]:port` (or `smtp:host:port`)
 * become routes to one-server pools. Returns the routes and the pools they need.
 */
export function parseRoutesFromTransport(text: string): { domains: string[]; host: string; port: number; line: number }[] {
  const out: { domains: string[]; host: string; port: number; line: number }[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const [key, value] = line.split(/\s+/, 2);
    const m = /^(?:smtp|relay)?:\[?([^\]:]+)\]?(?::(\d+))?$/.exec(value ?? '');
    if (!m) throw new Error(`line ${i + 1}: cannot read next hop "${value ?? ''}" (expected smtp:[host]:port)`);
    out.push({ domains: [key], host: m[1], port: Number(m[2] ?? 25), line: i + 1 });
  });
  return out;
}
