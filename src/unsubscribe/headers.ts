// What the cleanup stage does about unsubscribing, per traffic class (RFC 2369, RFC 8058): a
// message of a class with `add` and no List-Unsubscribe of its own gets both fields, its
// recipient's one-click URL (and the mailto, when configured); a class with `require` refuses
// a message without a one-click unsubscribe of its own. Pure: the caller signs what is added.
//
// A token binds one recipient, so the fields are added to single-recipient messages only: a
// bulk message to several recipients cannot say whose click it is (bulk senders send one
// message per recipient). Such a message goes out without them, and the caller counts it.
import { makeToken } from './token.js';

export interface UnsubscribeSettings {
  base_url: string;
  secret: string;
  mailto?: string;
  classes: Record<string, { add: boolean; require: boolean }>;
}

export type UnsubscribeDecision =
  | { kind: 'none' }
  | { kind: 'add'; fields: string }
  | { kind: 'refuse'; code: number; text: string }
  | { kind: 'not-added'; why: string };

/** The unfolded value of the first field of this name in a header block, if any. */
export function fieldValue(header: string, name: string): string | undefined {
  const m = new RegExp(`^${name.replace(/-/g, '\\-')}[ \\t]*:((?:.*)(?:\\r?\\n[ \\t].*)*)`, 'im').exec(header);
  return m ? m[1].replace(/\r?\n[ \t]/g, ' ').trim() : undefined;
}

/** RFC 8058 section 3.1: an https URI in List-Unsubscribe and List-Unsubscribe-Post: List-Unsubscribe=One-Click. */
export function hasOneClick(header: string): boolean {
  const lu = fieldValue(header, 'List-Unsubscribe');
  const post = fieldValue(header, 'List-Unsubscribe-Post');
  return !!lu && /<https:\/\/[^>\s]+>/i.test(lu) && !!post && /^List-Unsubscribe=One-Click$/i.test(post.trim());
}

export function unsubscribeDecision(a: { header: string; cls: string; recipients: readonly string[]; senderDomain: string; tags: Record<string, string>; now: number; settings: UnsubscribeSettings | undefined }): UnsubscribeDecision {
  const rule = a.settings?.classes[a.cls];
  if (!a.settings || !rule || (!rule.add && !rule.require)) return { kind: 'none' };
  const own = fieldValue(a.header, 'List-Unsubscribe');
  if (rule.require && !hasOneClick(a.header)) {
    if (!rule.add || own !== undefined) {
      const what = own === undefined ? 'no List-Unsubscribe' : 'no one-click unsubscribe (an https URI in List-Unsubscribe and List-Unsubscribe-Post: List-Unsubscribe=One-Click)';
      return { kind: 'refuse', code: 550, text: `5.7.0 Mail of class ${a.cls} needs a one-click unsubscribe (RFC 8058): this message has ${what}` };
    }
  }
  if (own !== undefined || !rule.add) return { kind: 'none' };
  if (a.recipients.length !== 1) {
    if (rule.require) return { kind: 'refuse', code: 550, text: `5.7.0 Mail of class ${a.cls} needs a one-click unsubscribe: send one message per recipient, or add your own List-Unsubscribe` };
    return { kind: 'not-added', why: `${a.recipients.length} recipients: a one-click URL names one` };
  }
  const token = makeToken(a.settings.secret, { recipient: a.recipients[0].toLowerCase(), senderDomain: a.senderDomain, tags: a.tags, issued: a.now });
  const url = `${a.settings.base_url.replace(/\/+$/, '')}/u/${token}`;
  const mailto = a.settings.mailto ? `,\r\n <mailto:${a.settings.mailto}?subject=unsubscribe%20${token}>` : '';
  return { kind: 'add', fields: `List-Unsubscribe: <${url}>${mailto}\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n` };
}
