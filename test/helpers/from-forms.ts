// Header blocks used by the From-binding tests (unit and end to end).

/** Header blocks whose author is in b.test to any RFC 5322 reader, each written to look like a.test. */
export const WALKAROUNDS: Record<string, string> = {
  'quoted local part holding @a.test': 'From: "ceo@a.test"@b.test\r\n',
  'display name that reads as an a.test address': 'From: "ceo@a.test" <ceo@b.test>\r\n',
  'obsolete route through a.test': 'From: <@a.test:ceo@b.test>\r\n',
  'a list of two mailboxes': 'From: x@a.test, ceo@b.test\r\n',
  'a second From header': 'From: x@a.test\r\nFrom: ceo@b.test\r\n',
};
