// The shipped provider rulebook: (1) MX "sites" that group recipient domains by the receiving
// infrastructure (host-name patterns of their MX records), (2) per-site shaping defaults for
// `shaping: { preset: providers }`, (3) throttling replies the providers are known to send.
// Every number has its public source in a comment beside it; where no public source gives a
// value for a provider, the field is left out and the comment says so. Nothing here is a
// guess. An operator's own `sites:` (a name given there replaces the shipped one; a longer
// pattern wins over a shorter one) and `shaping:` entries (field by field) override all of it.
// Pure data, no I/O.
//
// Sources, as read on 2026-12-05:
//   [KS] KumoMTA shipped shaping defaults: github.com/KumoCorp/kumomta, file
//        assets/policy-extras/shaping.toml, last changed in commit 9dd4078c (2026-02-23).
//   [KC] KumoMTA community shaping rules: same repository, assets/community/shaping.toml,
//        last changed in commit e352ca91 (2026-06-23).
//   [KD] KumoMTA docs on provider blocks: same repository, docs/userguide/trafficshaping/rollups.md
//        (https://docs.kumomta.com/userguide/trafficshaping/rollups/).
//   Provider pages are cited where used. Google's sender guidelines
//   (https://support.google.com/a/answer/81126) give no connection or rate numbers. Microsoft's
//   page (https://sendersupport.olc.protection.outlook.com/pm/Policies) could not be read here;
//   its policy text as quoted elsewhere only caps a sender at 500 simultaneous connections, an
//   outer bound rather than a default, so no number comes from it.
// KumoMTA's `connection_limit` / `provider_connection_limit` count connections per egress
// source, as smtplb's `concurrency` counts per (server or source, destination), and its
// `max_deliveries_per_connection` is smtplb's `messages_per_connection`. A smtplb site shares
// one limit across all of its MX hosts, as `provider_connection_limit` does; where KumoMTA uses
// a plain `connection_limit` (a limit per distinct MX set) the shared limit here is the stricter
// reading. No provider publishes a message rate, so `rate` is set only where a source gives one.

/** Host-name patterns per site: "*.google.com" matches any name ending in ".google.com"; a name without "*." matches exactly. Lower case, no trailing dot. */
export const PROVIDER_SITES: Record<string, string[]> = {
  // Gmail and Google Workspace share MX hosts (aspmx.l.google.com, smtp.google.com, ...). [KS]
  google: ['*.google.com', '*.googlemail.com'],
  // Outlook.com/Hotmail (*.olc.protection.outlook.com), Microsoft 365 (<tenant>.mail.protection.outlook.com)
  // and the DANE set (*.mx.microsoft). [KS] and [KD] keep consumer, 365 and DANE as three separate
  // edge groups with 5 connections each; one site here shares 5 among them. To split Outlook.com
  // off, add `sites: { outlook: ['*.olc.protection.outlook.com'] }` (the longer pattern wins).
  microsoft: ['*.protection.outlook.com', '*.mx.microsoft'],
  // Yahoo and AOL: AOL's MX is mx-aol.mail.gm0.yahoodns.net (public delivery logs). [KS]
  yahoo: ['*.yahoodns.net'],
  // Yahoo! JAPAN runs its own MX hosts (mx1..mx5.mail.yahoo.co.jp), apart from yahoodns.net. [KC]
  'yahoo-japan': ['*.mail.yahoo.co.jp'],
  // iCloud, me.com, mac.com: mx01/mx02.mail.icloud.com. [KS]
  apple: ['*.icloud.com'],
  // comcast.net: mx1a1.comcast.net, mx2h1.comcast.net, ... ([KS] rolls them up by MX set).
  comcast: ['*.comcast.net'],
  // United Internet: GMX (mx00/mx01.emig.gmx.net), WEB.DE (mx-ha0N.web.de), mail.com (mx00/mx01.mail.com).
  // [KC] groups gmx.net and web.de under one provider but with a per-MX-set limit, hence two sites.
  gmx: ['*.gmx.net'],
  webde: ['*.web.de'],
  mailcom: ['*.mail.com'],
  // Orange France (smtp-in.orange.fr). [KS]
  orange: ['*.orange.fr'],
  // Mimecast runs separate MTAs per region and [KS]/[KD] apply its limit per region, so each
  // region with publicly seen MX names (us-/eu-/au-smtp-inbound-N.mimecast.com) is its own site;
  // the suffixes [KS] lists cover the rest (other *.mimecast.com regions share `mimecast`).
  'mimecast-us': ['us-smtp-inbound-1.mimecast.com', 'us-smtp-inbound-2.mimecast.com'],
  'mimecast-eu': ['eu-smtp-inbound-1.mimecast.com', 'eu-smtp-inbound-2.mimecast.com'],
  'mimecast-au': ['au-smtp-inbound-1.mimecast.com', 'au-smtp-inbound-2.mimecast.com'],
  'mimecast-za': ['*.mimecast.co.za'],
  'mimecast-offshore': ['*.mimecast-offshore.com'],
  mimecast: ['*.mimecast.com'],
  // [KC] (contributed 2026-03-27 / 2026-06-23).
  barracuda: ['*.barracudanetworks.com'],
  netvigator: ['*.netvigator.com'],
  kpn: ['*.kpnmail.nl'],
  qq: ['*.qq.com'],
  // NetEase (163.com, 126.com): 163mx01.mxmail.netease.com, ... [KC]
  netease: ['*.netease.com'],
  // Sites without shaping values (no public source gives any; see PROVIDER_SHAPING): they group
  // the provider's domains so an operator's `site:NAME` rule covers all of them.
  // Yandex (mx.yandex.ru; Yandex 360 domains use mx.yandex.net).
  yandex: ['*.yandex.net', '*.yandex.ru'],
  // Mail.ru / VK WorkSpace (mxs.mail.ru, emx.mail.ru).
  mailru: ['*.mail.ru'],
  // Zoho Mail (mx.zoho.com, mx2.zoho.com, mx3.zoho.com; regional .eu and .in).
  zoho: ['*.zoho.com', '*.zoho.eu', '*.zoho.in'],
  // Proofpoint: enterprise per-customer clusters (mx0a-NNNN.pphosted.com), Essentials (mx1-us1.ppe-hosted.com).
  proofpoint: ['*.pphosted.com', '*.ppe-hosted.com'],
  // Cloudflare Email Routing (route1/route2/route3.mx.cloudflare.net).
  cloudflare: ['*.mx.cloudflare.net'],
  // Fastmail (in1-smtp/in2-smtp.messagingengine.com).
  fastmail: ['*.messagingengine.com'],
};

export interface PresetRule { concurrency?: number; rate?: string; messages_per_connection?: number }

/** Shaping for `shaping: { preset: providers }`, keyed "site:<name>" (names from PROVIDER_SITES). `rate` in smtplb's rate syntax: "N/s", "N/min" or "N/hour" (e.g. "100/s", "3000/min"). */
export const PROVIDER_SHAPING: Record<string, PresetRule> = {
  // [KS] [provider."google"]: provider_connection_limit = 5, max_deliveries_per_connection = 50
  // (also in [KD]). Google publishes no rate; [KD]'s example `provider_max_message_rate = "100/s"`
  // only illustrates the syntax and is not in the shipped file, so no rate here.
  'site:google': { concurrency: 5, messages_per_connection: 50 },
  // [KS] [provider."outlook"], ."office365" and ."office365-dane": provider_connection_limit = 5,
  // max_deliveries_per_connection = 50 each (the file cites sendersupport.olc.protection.outlook.com/pm/Policies).
  'site:microsoft': { concurrency: 5, messages_per_connection: 50 },
  // [KS] [provider."yahoo"]: max_deliveries_per_connection = 20, marked as given by Yahoo itself;
  // Yahoo's help page https://help.yahoo.com/kb/SLN3433.html says it takes at most 20 messages per
  // connection. Yahoo publishes no connection count (the same page says so): no concurrency.
  'site:yahoo': { messages_per_connection: 20 },
  // [KC] ["yahoo.co.jp"]: connection_limit = 2, max_message_rate = "10/s", max_deliveries_per_connection = 20.
  'site:yahoo-japan': { concurrency: 2, rate: '10/s', messages_per_connection: 20 },
  // [KS] [provider."apple"] (cites https://support.apple.com/en-us/102322):
  // provider_connection_limit = 10, max_deliveries_per_connection = 5.
  'site:apple': { concurrency: 10, messages_per_connection: 5 },
  // [KS] ["comcast.net"], marked as given by Comcast (cites https://spa.xfinity.com/help/postmaster):
  // connection_limit = 25, max_deliveries_per_connection = 1000. Comcast's own error-code page
  // (postmaster.comcast.net/smtp-error-codes.php, "421 Too many sessions opened") also allows 25
  // simultaneous connections per sending IP.
  'site:comcast': { concurrency: 25, messages_per_connection: 1000 },
  // [KC] [provider."gmx.net_web.de"]: connection_limit = 4, max_deliveries_per_connection = 20.
  'site:gmx': { concurrency: 4, messages_per_connection: 20 },
  'site:webde': { concurrency: 4, messages_per_connection: 20 },
  // [KS] ["mail.com"], marked as given by mail.com: max_deliveries_per_connection = 100. No connection limit given.
  'site:mailcom': { messages_per_connection: 100 },
  // [KS] [provider."orange"] (cites https://messagerie.orange.fr/postmaster.html):
  // provider_connection_limit = 2, max_deliveries_per_connection = 100.
  'site:orange': { concurrency: 2, messages_per_connection: 100 },
  // [KS] [provider."mimecast"], marked as given by Mimecast (cites community.mimecast.com
  // gateway articles): connection_limit = 10, max_deliveries_per_connection = 100, per region.
  'site:mimecast-us': { concurrency: 10, messages_per_connection: 100 },
  'site:mimecast-eu': { concurrency: 10, messages_per_connection: 100 },
  'site:mimecast-au': { concurrency: 10, messages_per_connection: 100 },
  'site:mimecast-za': { concurrency: 10, messages_per_connection: 100 },
  'site:mimecast-offshore': { concurrency: 10, messages_per_connection: 100 },
  'site:mimecast': { concurrency: 10, messages_per_connection: 100 },
  // [KC] [provider."barracuda"]: provider_connection_limit = 10, max_deliveries_per_connection = 15.
  'site:barracuda': { concurrency: 10, messages_per_connection: 15 },
  // [KC] [provider."netvigator"]: provider_connection_limit = 5, max_deliveries_per_connection = 10.
  'site:netvigator': { concurrency: 5, messages_per_connection: 10 },
  // [KC] [provider."kpn"]: connection_limit = 10, max_deliveries_per_connection = 10.
  'site:kpn': { concurrency: 10, messages_per_connection: 10 },
  // [KC] [provider."qq.com"]: connection_limit = 4, max_deliveries_per_connection = 8.
  'site:qq': { concurrency: 4, messages_per_connection: 8 },
  // [KC] [provider."163.com"]: connection_limit = 4, max_deliveries_per_connection = 7.
  'site:netease': { concurrency: 4, messages_per_connection: 7 },
  // yandex, mailru, zoho, proofpoint, cloudflare, fastmail: no entry. Neither KumoMTA's files nor
  // any provider page read gives connection, rate or per-connection numbers for them.
};

/** Throttling reply patterns providers document (extra to generic ones like /try again later/ /rate limit/ /TSS0\d/ /S3150/ which smtplb already has): e.g. Gmail 4.7.28 "unusual rate of unsolicited mail", Microsoft 4.7.650/S775, Yahoo "[TS01]"..., each with its source in a comment. Only 4xx-deferral texts. */
export const PROVIDER_BACKOFF_PATTERNS: RegExp[] = [
  // Gmail 421 4.7.28 (formerly 4.7.0): an unusual rate of unsolicited mail from the IP or the
  // signing domain. https://support.google.com/a/answer/3726730 (Gmail SMTP errors and codes);
  // [KC] gmail automation. Gmail's 450 4.2.1 "receiving mail at a rate" is left out on purpose:
  // it is about one recipient's mailbox, not about the sender's rate to the whole site.
  /\bunusual rate of\b/i,
  // Microsoft 451 4.7.650 / 4.7.651, "temporarily rate limited due to IP reputation", with the
  // S775, S843 or S3114 tag. [KS] default automation; [KC] outlook automation; public bounce logs.
  /\b4\.7\.65[01]\b/,
  /\(S(775|843|3114)\)/,
  // Microsoft 421 RP-001..RP-003: hourly/daily message or connection limits for the IP. [KS]
  // default automation matches the "weren't sent" wording of these replies; RP-001 appears in a
  // public Hotmail delivery log (pastebin.com/dW4JrGn7), RP-002/RP-003 in suped.com's article on
  // Microsoft rate limiting due to IP reputation.
  /\bRP-00[1-3]\b/,
  // Microsoft: too many connections or messages per connection from the IP, and the IB007
  // refusal (concurrent connections over the limit). [KC] outlook automation.
  /exceeded (the )?maximum number of (connections|messages per connection)/i,
  /\bIB007\b/,
  // Yahoo / AOL 421 [TS01] [TS02] [TS03] and [IPTS04] [IPTS05]: deferred for unusual traffic or
  // complaints (the built-in pattern only covers TSS0N). https://help.yahoo.com/kb/SLN3436.html (TS03),
  // https://help.yahoo.com/kb/review-xx-smtp-sln26151.html (4xx codes), [KC] yahoo automation.
  /\[(TS0\d|IPTS0\d)\]/,
  /will be permanently deferred/i,
  // Apple iCloud 421 [HCM1] "your mail from <ip> was deferred". [KC] apple automation.
  /\[HCM1\]/,
  // Comcast RL (rate-limit) codes such as RL000001 and RL000010 (domain throttled). [KS] comcast
  // automation (matches "RL0000"), citing https://postmaster.comcast.net/smtp-error-codes.php#RL000010.
  /\bRL\d{6}\b/,
  // Orange 421 "Trop de connexions" (too many connections, in French). [KC] orange automation;
  // [KS] cites https://www.postmastery.com/orange-postmaster-smtp-error-codes-ofr/.
  /trop de connexions/i,
  // Mimecast 451 "Internal resource temporarily unavailable". [KC] mimecast automation; [KS]
  // cites Mimecast's SMTP error-code article on community.mimecast.com.
  /internal resource temporarily unavailable/i,
];
