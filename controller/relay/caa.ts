/**
 * The relay's ACME account and the CAA record that can pin it. Upstream's `cmdeploy dns`
 * recommends `<domain>. CAA 0 issue "letsencrypt.org;accounturi=<URL>"` with the URL that
 * `acmetool account-url` prints (chatmail/relay `cmdeploy/src/cmdeploy/dns.py`
 * `get_filled_zone_file`, `cmdeploy/src/cmdeploy/remote/rdns.py` `perform_initial_checks`).
 *
 * acmetool (hlandau/acmetool v0.2, `storage/storage-fdb.go`, `storage/util.go`) keeps each
 * account's key at `/var/lib/acme/accounts/<directory part>/<key id>/privkey` and does not
 * store the account URL: `account-url` asks the ACME server with that key. So a carried
 * account is the same account exactly when the same key sits under the same directory; the
 * URL itself comes from `acmetool account-url` on a host, or from the record.
 */
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

export interface AcmeAccount {
  /** The ACME directory URL, decoded from the directory name (`https://acme-v02.api.letsencrypt.org/directory`). */
  directoryUrl: string;
  /** The account directory's name: acmetool's key id. */
  keyId: string;
  /** The privkey file, relative to the acme state directory. */
  keyFile: string;
  /** The key id computed from the privkey matches the directory name (acmetool refuses the account otherwise). */
  keyIdMatches: boolean;
}

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** Lowercase RFC 4648 base32 without padding, as acmetool names keys. */
function base32(buf: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

/** acmetool's key id: base32 of the SHA-256 of the public key's SubjectPublicKeyInfo (storage/util.go determineKeyIDFromCert). */
export function acmeKeyId(privateKeyPem: string): string {
  const spki = createPublicKey(createPrivateKey({ key: privateKeyPem, format: 'pem' })).export({ type: 'spki', format: 'der' });
  return base32(createHash('sha256').update(spki).digest());
}

/** Go's url.QueryEscape, then acmetool's lowerEscapes. */
function queryEscapeLower(s: string): string {
  return encodeURIComponent(s)
    .replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16))
    .replace(/%20/g, '+')
    .replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase());
}

/** The directory name acmetool gives a directory URL (storage/util.go accountURLPart). */
export function acmeDirectoryPart(directoryUrl: string): string {
  const u = new URL(directoryUrl);
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error(`${directoryUrl}: scheme must be https or http`);
  let s = u.href.slice(u.protocol.length + 2);
  if (u.pathname === '/' && s.endsWith('/')) s = s.slice(0, -1);
  s = queryEscapeLower(s);
  return u.protocol === 'http:' ? `http:${s}` : s;
}

/** The directory URL of an acmetool account directory name (storage/util.go decodeAccountURLPart). */
export function acmeDirectoryUrl(part: string): string {
  let scheme = 'https';
  if (part.startsWith('http:')) {
    scheme = 'http';
    part = part.slice(5);
  }
  const u = new URL(`${scheme}://${decodeURIComponent(part.replace(/\+/g, ' '))}`);
  return u.href;
}

/** The accounts under an acme state directory (`/var/lib/acme` on a host, or a carried copy). */
export async function listAcmeAccounts(acmeDir: string): Promise<AcmeAccount[]> {
  const accounts: AcmeAccount[] = [];
  const base = path.join(acmeDir, 'accounts');
  const servers = await fsp.readdir(base, { withFileTypes: true }).catch(() => []);
  for (const server of servers.filter((d) => d.isDirectory()).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const ids = await fsp.readdir(path.join(base, server.name), { withFileTypes: true });
    for (const id of ids.filter((d) => d.isDirectory()).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const keyFile = path.join('accounts', server.name, id.name, 'privkey');
      let pem: string;
      try {
        pem = await fsp.readFile(path.join(acmeDir, keyFile), 'utf8');
      } catch {
        continue; // acmetool skips an account without a key too
      }
      let keyIdMatches = false;
      try {
        keyIdMatches = acmeKeyId(pem) === id.name;
      } catch {
        keyIdMatches = false;
      }
      let directoryUrl: string;
      try {
        directoryUrl = acmeDirectoryUrl(server.name);
      } catch {
        continue;
      }
      accounts.push({ directoryUrl, keyId: id.name, keyFile, keyIdMatches });
    }
  }
  return accounts;
}

/** A CAA record as node's `dns.resolveCaa` returns it (one of issue, issuewild, iodef...). */
export interface CaaRecord {
  critical: number;
  issue?: string;
  issuewild?: string;
  [tag: string]: string | number | undefined;
}

/** Parses the presentation form `0 issue "letsencrypt.org;accounturi=..."`. */
export function parseCaaLine(line: string): CaaRecord | undefined {
  const m = /^\s*(\d+)\s+([A-Za-z0-9]+)\s+"?(.*?)"?\s*$/.exec(line);
  if (!m) return undefined;
  return { critical: Number(m[1]), [m[2].toLowerCase()]: m[3] };
}

export interface CaaIssue {
  /** The CA's domain (`letsencrypt.org`), empty when the record forbids issuance. */
  issuer: string;
  /** RFC 8657 parameters (`accounturi`, `validationmethods`). */
  params: Record<string, string>;
}

/** Splits an `issue` value (RFC 8659 4.2: `issuer; key=value; ...`). */
export function parseCaaIssue(value: string): CaaIssue {
  const [issuer, ...rest] = value.split(';');
  const params: Record<string, string> = {};
  for (const p of rest) {
    const eq = p.indexOf('=');
    if (eq > 0) params[p.slice(0, eq).trim()] = p.slice(eq + 1).trim();
  }
  return { issuer: issuer.trim(), params };
}

export interface CaaCheck {
  ok: boolean;
  /** The account URIs the zone's `issue` records pin, if any. */
  pinned: string[];
  /** The record value upstream would publish for this account, when its URL is known. */
  expected?: string;
  reason?: string;
}

/**
 * Whether the zone's CAA records let the carried account renew: ok when no `issue` record
 * pins an account, or one of the pinning records names `accountUrl` (the URL
 * `acmetool account-url` prints for the carried key). Without `accountUrl`, a pin cannot be
 * checked and the result is not ok, saying so.
 */
export function checkCaa(records: readonly CaaRecord[], accountUrl: string | undefined): CaaCheck {
  const issues = records.filter((r) => typeof r.issue === 'string').map((r) => parseCaaIssue(r.issue as string));
  const pinned = issues.filter((i) => i.params.accounturi !== undefined).map((i) => i.params.accounturi);
  const expected = accountUrl ? `0 issue "letsencrypt.org;accounturi=${accountUrl}"` : undefined;
  if (pinned.length === 0) return { ok: true, pinned, expected };
  if (!accountUrl) return { ok: false, pinned, reason: `a CAA record pins the ACME account ${pinned.join(', ')}, and the relay's account URL is unknown` };
  if (pinned.includes(accountUrl)) return { ok: true, pinned, expected };
  return {
    ok: false,
    pinned,
    expected,
    reason: `the CAA record pins ${pinned.join(', ')}, not the relay's account ${accountUrl}: Let's Encrypt will refuse its renewals`,
  };
}

/** Accounts of `source` that `target` lacks (same directory and key id), e.g. old host vs carried copy. */
export function missingAccounts(source: readonly AcmeAccount[], target: readonly AcmeAccount[]): AcmeAccount[] {
  const have = new Set(target.map((a) => `${a.directoryUrl} ${a.keyId}`));
  return source.filter((a) => !have.has(`${a.directoryUrl} ${a.keyId}`));
}
