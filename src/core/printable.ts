// Client or peer text quoted back in an SMTP reply: printable ASCII only (a control character
// could end the reply line or forge another), and bounded.

export function printable(s: string, max: number): string {
  const t = s.replace(/[^\x20-\x7e]/g, '?');
  return t.length > max ? `${t.slice(0, max)}...` : t;
}
