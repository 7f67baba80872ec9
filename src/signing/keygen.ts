// `smtplb dkim keygen`: a DKIM key pair and the TXT record to publish for it.
import { generateKeyPairSync } from 'node:crypto';

export interface KeyPair { privateKeyPem: string; record: string; name: string }

export function dkimKeygen(domain: string, selector: string, algorithm: 'rsa' | 'ed25519', bits = 2048): KeyPair {
  const pair = algorithm === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: bits }) : generateKeyPairSync('ed25519');
  const privateKeyPem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const spki = pair.publicKey.export({ type: 'spki', format: 'der' });
  // RSA publishes the whole SubjectPublicKeyInfo; Ed25519 only the 32-byte key (RFC 8463).
  const p = (algorithm === 'rsa' ? spki : spki.subarray(spki.length - 32)).toString('base64');
  const name = `${selector}._domainkey.${domain}`;
  return { privateKeyPem, name, record: `v=DKIM1; k=${algorithm}; p=${p}` };
}

/** A TXT value split into 255-byte strings, as DNS zone files need it. */
export function zoneLine(name: string, record: string): string {
  const parts = record.match(/.{1,255}/g) ?? [];
  return `${name}. IN TXT ( ${parts.map((s) => `"${s}"`).join(' ')} )`;
}
