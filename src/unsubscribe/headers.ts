// What the cleanup stage does about unsubscribing, per traffic class (RFC 2369, RFC 8058): a
// message of a class with `add` and no List-Unsubscribe of its own gets both fields, its
// recipient's one-click URL (and the mailto, when configured); a class with `require` refuses
// a message without a one-click unsubscribe of its own. Pure: the caller signs what is added.
//
// A token binds one recipient, so the fields are added to single-recipient messages only: a
// bulk message to several recipients cannot say whose click it is (bulk senders send one
// message per recipient). Such a message goes out without them, and the caller counts it.
import { makeToken, TOKEN_MAX } from './token.js';

/** RFC 5322 2.1.1: a line is at most 998 characters. */
const LINE_MAX = 998;
/** A token longer than this is made again without the tags. */
const TOKEN_ISSUE_MAX = 700;

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
  // The fields must stay valid header lines (RFC 5322: 998 characters) and the token within what
  // the endpoint reads (TOKEN_MAX). Many or long tags are left out of the token rather than
  // make it too long: the unsubscribe still works, its event carries no tags.
  const claim = { recipient: a.recipients[0].toLowerCase(), senderDomain: a.senderDomain, tags: a.tags, issued: a.now };
  let token = makeToken(a.settings.secret, claim);
  if (token.length > TOKEN_ISSUE_MAX) token = makeToken(a.settings.secret, { ...claim, tags: {} });
  const url = `${a.settings.base_url.replace(/\/+$/, '')}/u/${token}`;
  const first = `List-Unsubscribe: <${url}>${a.settings.mailto ? ',' : ''}`;
  const second = a.settings.mailto ? ` <mailto:${a.settings.mailto}?subject=unsubscribe%20${token}>` : '';
  if (token.length > TOKEN_MAX || first.length > LINE_MAX || second.length > LINE_MAX) {
    const why = 'the unsubscribe URL would not fit a header line (998 characters)';
    if (rule.require) return { kind: 'refuse', code: 550, text: `5.7.0 Mail of class ${a.cls} needs a one-click unsubscribe, and ${why}: add your own List-Unsubscribe` };
    return { kind: 'not-added', why };
  }
  // An application's own List-Unsubscribe-Post (without List-Unsubscribe) is kept, not doubled.
  const post = fieldValue(a.header, 'List-Unsubscribe-Post') === undefined ? 'List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n' : '';
  return { kind: 'add', fields: `${first}${second ? `\r\n${second}` : ''}\r\n${post}` };
}
