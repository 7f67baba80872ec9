// Throttling and blocking replies of large mailbox providers, worded as they send them
// (collected from published bounce logs: postmaster forums, mailop, provider help pages),
// for `preset:` / `data_preset:` rules of `smtplb sink`. `{ip}` becomes the client's IP.
// Gmail answers with multi-line replies that repeat the enhanced code on every line; the
// line breaks below are where Gmail puts them.

export interface Reply {
  code: number;
  /** One entry per reply line, without the code and separator ("5.1.1 User unknown"). */
  lines: string[];
}

export const PRESETS: Record<string, { where: string; reply: Reply }> = {
  // Gmail, IP rate limited for unsolicited mail (usually at end of DATA, sometimes at RCPT).
  'gmail-unsolicited': {
    where: 'Gmail: unusual rate of unsolicited mail from the IP',
    reply: {
      code: 421,
      lines: [
        '4.7.28 Our system has detected an unusual rate of unsolicited mail originating',
        '4.7.28 from your IP address. To protect our users from spam, mail sent from your IP',
        '4.7.28 address has been temporarily rate limited. Please visit',
        '4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError to',
        '4.7.28 review our Bulk Email Senders Guidelines. a1si123456gsmtp - gsmtp',
      ],
    },
  },
  // Gmail, one recipient receives too much mail (at RCPT or end of DATA).
  'gmail-receiving-rate': {
    where: 'Gmail: the recipient receives mail at too high a rate',
    reply: {
      code: 450,
      lines: [
        '4.2.1 The user you are trying to contact is receiving mail at a rate that',
        '4.2.1 prevents additional messages from being delivered. Please resend your',
        '4.2.1 message at a later time. If the user is able to receive mail at that',
        '4.2.1 time, your message will be delivered. For more information, please',
        '4.2.1 visit https://support.google.com/mail/?p=ReceivingRate a1si123456gsmtp - gsmtp',
      ],
    },
  },
  // Yahoo / AOL deferral for volume or complaints.
  'yahoo-tss04': {
    where: 'Yahoo: deferred for unexpected volume or user complaints',
    reply: {
      code: 421,
      lines: ['4.7.0 [TSS04] Messages from {ip} temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes'],
    },
  },
  // Outlook.com / Hotmail: IP rate limited for reputation (Protocol Filter Agent).
  'microsoft-rate-limited': {
    where: 'Microsoft: IP temporarily rate limited due to IP reputation (S775)',
    reply: {
      code: 451,
      lines: ['4.7.650 The mail server [{ip}] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://aka.ms/postmaster (S775)'],
    },
  },
  'microsoft-s3114': {
    where: 'Microsoft: IP temporarily rate limited due to IP reputation (S3114)',
    reply: {
      code: 451,
      lines: ['4.7.651 The mail server [{ip}] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S3114)'],
    },
  },
  // Outlook.com / Hotmail: the IP's network is on Microsoft's block list (a 550).
  'microsoft-s3150': {
    where: "Microsoft: the sender's network is on the block list (S3150), permanent",
    reply: {
      code: 550,
      lines: ["5.7.1 Unfortunately, messages from [{ip}] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors. [AM0EUR02FT012.eop-EUR02.prod.protection.outlook.com]"],
    },
  },
};

export function presetNames(): string[] {
  return Object.keys(PRESETS);
}
