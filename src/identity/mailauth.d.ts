// Types for the parts of mailauth the identity checks use that ship without typings (its SPF
// and MTA-STS modules have their own).
declare module 'mailauth/lib/tools.js' {
  /** DMARC identifier alignment: the entry of `domainList` aligned with `fromDomain` (relaxed: same organisational domain; strict: same domain), or false. */
  export function getAlignment(fromDomain: string, domainList: ({ domain: string } | string)[], strict?: boolean): { domain: string } | false;
}

declare module 'mailauth/lib/dmarc/get-dmarc-record.js' {
  /** The DMARC record that applies to `domain` (its own, else its organisational domain's), parsed into tags; false when none (or several). */
  const getDmarcRecord: (domain: string, resolver?: (name: string, type: string) => Promise<unknown>) => Promise<(Record<string, string | number | boolean> & { rr: string; isOrgRecord: boolean }) | false>;
  export default getDmarcRecord;
}
