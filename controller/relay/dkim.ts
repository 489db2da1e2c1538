/**
 * The relay's DKIM record as upstream publishes it, and whether a DNS TXT record carries the
 * public key of a given private key. Selector and value format: chatmail/relay
 * `cmdeploy/src/cmdeploy/opendkim/deployer.py` (`dkim_selector = "opendkim"`) and
 * `cmdeploy/src/cmdeploy/remote/rdns.py` `get_dkim_entry` (`openssl rsa -pubout`, then
 * `v=DKIM1;k=rsa;p=<key>;s=email;t=s` cut into 255-character strings). Pure.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';

/** The selector upstream configures and publishes. */
export const DKIM_SELECTOR = 'opendkim';

/** Where the key lives on a relay host. */
export const DKIM_PRIVATE_KEY = `/etc/dkimkeys/${DKIM_SELECTOR}.private`;

/** `opendkim._domainkey.<mail_domain>` (no trailing dot). */
export function dkimRecordName(mailDomain: string): string {
  return `${DKIM_SELECTOR}._domainkey.${mailDomain.replace(/\.$/, '')}`;
}

/**
 * The base64 SubjectPublicKeyInfo of an RSA private key in PEM (PKCS#1 or PKCS#8), as
 * `openssl rsa -in KEY -pubout | awk '/-/{next}{printf("%s",$0)}'` prints it. Throws a plain
 * Error naming no key material when the text is not a private key.
 */
export function dkimPublicKey(privateKeyPem: string): string {
  let key;
  try {
    key = createPrivateKey({ key: privateKeyPem, format: 'pem' });
  } catch {
    throw new Error('not a PEM private key');
  }
  return createPublicKey(key).export({ type: 'spki', format: 'der' }).toString('base64');
}

/** The TXT value upstream's `cmdeploy dns` asks for, as one string. */
export function dkimRecordValue(publicKeyB64: string): string {
  return `v=DKIM1;k=rsa;p=${publicKeyB64};s=email;t=s`;
}

/** The value cut into the 255-character strings of a zone file line, as upstream does. */
export function dkimRecordStrings(value: string): string[] {
  return value.match(/.{1,255}/gs) ?? [];
}

/** The zone-file form: `"<part1>" "<part2>"`. */
export function dkimZoneValue(value: string): string {
  return dkimRecordStrings(value)
    .map((s) => `"${s}"`)
    .join(' ');
}

/**
 * The tags of a DKIM TXT value (RFC 6376 3.6.1: `tag=value` separated by `;`, whitespace
 * around and inside values ignored; `p` is base64, folding whitespace removed).
 */
export function parseDkimTags(value: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const part of value.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    if (!name || tags.has(name)) continue;
    tags.set(name, part.slice(eq + 1).replace(/\s+/g, ''));
  }
  return tags;
}

export interface DkimCheck {
  ok: boolean;
  /** The record's name. */
  name: string;
  /** The value the record must have (upstream's format), for messages. */
  expected: string;
  /** The DKIM records found at the name, each joined from its strings. */
  found: string[];
  /** Why not, in words, when not ok. */
  reason?: string;
}

/**
 * Compares the TXT records found at `dkimRecordName(mailDomain)` (as node's
 * `dns.resolveTxt` gives them: each record a list of strings) with the private key. It is ok
 * when one `v=DKIM1` record has `p=` equal to the key's public key (formatting, other tags
 * and the order of strings aside).
 */
export function checkDkimRecord(mailDomain: string, txt: readonly (readonly string[])[], privateKeyPem: string): DkimCheck {
  return checkDkimRecordKey(mailDomain, txt, dkimPublicKey(privateKeyPem));
}

/**
 * As checkDkimRecord, with the public key (base64 SubjectPublicKeyInfo) instead of the private
 * key: for a caller that gets only the public key from the host (no key material on the wire).
 */
export function checkDkimRecordKey(mailDomain: string, txt: readonly (readonly string[])[], pub: string): DkimCheck {
  const name = dkimRecordName(mailDomain);
  const expected = dkimRecordValue(pub);
  const found = txt.map((chunks) => chunks.join('')).filter((v) => /^\s*v\s*=\s*DKIM1\b/i.test(v) || /(^|;)\s*p\s*=/.test(v));
  if (found.length === 0) return { ok: false, name, expected, found, reason: `${name} has no DKIM TXT record` };
  const match = found.some((v) => {
    const tags = parseDkimTags(v);
    return tags.get('p') === pub && (tags.get('k') ?? 'rsa').toLowerCase() === 'rsa';
  });
  if (match) return { ok: true, name, expected, found };
  return {
    ok: false,
    name,
    expected,
    found,
    reason: found.some((v) => parseDkimTags(v).get('p') === '')
      ? `${name} revokes its key (empty p=)`
      : `${name} carries another public key than ${DKIM_PRIVATE_KEY}: other relays will reject this relay's mail`,
  };
}
