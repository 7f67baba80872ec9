// The public one-click unsubscribe endpoint (RFC 8058), on its own listener apart from the
// admin one (`unsubscribe: { listen }`): the URL in List-Unsubscribe is /u/TOKEN.
//
//   POST /u/TOKEN with List-Unsubscribe=One-Click in the body (form-urlencoded, as mailbox
//        providers send it, or multipart/form-data): the recipient is unsubscribed, 200.
//   GET  /u/TOKEN: a page with a button that makes that POST, and nothing changes (section 3.2:
//        link scanners and prefetchers GET every URL in a message; a GET must not unsubscribe).
//   A token that is altered, forged, malformed or expired: 400, nothing changes.
//
// Public input, bounded: a body of 4 KB at most, 10 s per request, no redirects, no cookies,
// no script; the page is served with a policy that forbids framing and any script.
import http from 'node:http';
import type { Logger } from 'pino';
import { readToken, TOKEN_MAX, type UnsubscribeClaim } from './token.js';

const BODY_MAX = 4096;

export interface EndpointContext {
  secret: () => string;
  maxAgeMs: () => number;
  /** Suppress the claim's recipient and tell the application; rejects when that could not be recorded. */
  unsubscribe: (claim: UnsubscribeClaim) => Promise<void>;
  log: Logger;
}

const HEADERS = {
  'Content-Security-Policy': "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

function send(res: http.ServerResponse, code: number, title: string, body: string): void {
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>`;
  res.writeHead(code, { ...HEADERS, 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': Buffer.byteLength(html) });
  res.end(html);
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Does the POST body carry List-Unsubscribe=One-Click (RFC 8058 section 3.1)? */
/** Connections one client address may hold at once. */
const PER_CLIENT = 16;

export function isOneClickBody(contentType: string, body: string): boolean {
  if (/^multipart\/form-data/i.test(contentType)) return /name="?List-Unsubscribe"?\r?\n(?:[^\r\n]+\r?\n)*\r?\nOne-Click\r?\n/i.test(body);
  return new URLSearchParams(body).get('List-Unsubscribe') === 'One-Click';
}

export function createEndpoint(ctx: EndpointContext): http.Server {
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const m = /^\/u\/([^/?#]{1,4096})(?:\?.*)?$/.exec(url);
    if (!m) return send(res, 404, 'Not found', '');
    const token = m[1];
    const read = token.length > TOKEN_MAX ? { ok: false as const, reason: 'token too long' } : readToken(ctx.secret(), token, Date.now(), ctx.maxAgeMs());
    if (!read.ok) {
      req.resume();
      return send(res, 400, 'This unsubscribe link is not valid', `<p>${escapeHtml(read.reason)}.</p>`);
    }
    if (req.method === 'GET' || req.method === 'HEAD') {
      req.resume();
      // The button makes the one-click POST; nothing changes on a GET.
      return send(res, 200, 'Unsubscribe', `<p>Stop mail to ${escapeHtml(read.claim.recipient)} from ${escapeHtml(read.claim.senderDomain)}?</p><form method="post" action="/u/${escapeHtml(token)}"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe</button></form>`);
    }
    if (req.method !== 'POST') {
      req.resume();
      res.writeHead(405, { ...HEADERS, Allow: 'GET, HEAD, POST' }).end();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > BODY_MAX) {
        send(res, 413, 'Request too large', '');
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      if (res.headersSent) return;
      if (!isOneClickBody(String(req.headers['content-type'] ?? ''), Buffer.concat(chunks).toString('latin1'))) return send(res, 400, 'Not a one-click unsubscribe', '<p>The request must carry List-Unsubscribe=One-Click.</p>');
      ctx.unsubscribe(read.claim).then(
        () => send(res, 200, 'Unsubscribed', `<p>${escapeHtml(read.claim.recipient)} will get no more mail from ${escapeHtml(read.claim.senderDomain)}.</p>`),
        (e: Error) => {
          ctx.log.warn({ err: e.message }, 'unsubscribe: could not be recorded');
          send(res, 503, 'Please try again later', '');
        },
      );
    });
    req.on('error', () => undefined);
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 50;
  // A public page: past 512 connections Node closes new ones at once, and one address may
  // hold at most PER_CLIENT of them, so one client cannot keep everyone else out.
  server.maxConnections = 512;
  const perClient = new Map<string, number>();
  server.on('connection', (socket) => {
    const who = socket.remoteAddress ?? '';
    const n = (perClient.get(who) ?? 0) + 1;
    if (n > PER_CLIENT) {
      socket.destroy();
      return;
    }
    perClient.set(who, n);
    socket.once('close', () => {
      const left = (perClient.get(who) ?? 1) - 1;
      if (left > 0) perClient.set(who, left);
      else perClient.delete(who);
    });
  });
  server.on('clientError', (_e, socket) => socket.destroy());
  return server;
}
