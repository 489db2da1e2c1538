import { execFileSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acmeDirectoryPart, acmeDirectoryUrl, acmeKeyId, checkCaa, listAcmeAccounts, missingAccounts, parseCaaIssue, parseCaaLine } from '../controller/relay/caa';

let tmp: string;
beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-caa-'));
});
afterEach(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

const LE = 'https://acme-v02.api.letsencrypt.org/directory';
const ecKey = (): string => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;

/** An independent base32 (Python's) of the SHA-256 of the key's SubjectPublicKeyInfo. */
function pythonKeyId(pem: string): string {
  const spki = createPublicKey(pem).export({ type: 'spki', format: 'der' }).toString('hex');
  return execFileSync('python3', ['-c', `import base64,hashlib,sys;print(base64.b32encode(hashlib.sha256(bytes.fromhex(sys.argv[1])).digest()).decode().rstrip('=').lower())`, spki], { encoding: 'utf8' }).trim();
}

describe('acme accounts', () => {
  it('names directories and keys as acmetool does', () => {
    expect(acmeDirectoryPart(LE)).toBe('acme-v02.api.letsencrypt.org%2fdirectory');
    expect(acmeDirectoryUrl('acme-v02.api.letsencrypt.org%2fdirectory')).toBe(LE);
    expect(acmeDirectoryPart('http://localhost:14000/dir')).toBe('http:localhost%3a14000%2fdir');
    expect(acmeDirectoryUrl('http:localhost%3a14000%2fdir')).toBe('http://localhost:14000/dir');
    expect(acmeDirectoryPart('https://ca.example/')).toBe('ca.example');
    const pem = ecKey();
    const id = acmeKeyId(pem);
    expect(id).toMatch(/^[a-z0-9]{52}$/);
    expect(id).toBe(pythonKeyId(pem));
  });

  it('lists the accounts of an acme state tree and compares two trees', async () => {
    const pem = ecKey();
    const id = acmeKeyId(pem);
    const dir = path.join(tmp, 'old/accounts', acmeDirectoryPart(LE), id);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, 'privkey'), pem, { mode: 0o600 });
    // A name that is not its key's id: acmetool refuses such an account.
    const bad = path.join(tmp, 'old/accounts', acmeDirectoryPart(LE), 'a'.repeat(52));
    await fsp.mkdir(bad, { recursive: true });
    await fsp.writeFile(path.join(bad, 'privkey'), ecKey());
    // The order of the accounts is the directory's: sort for the comparison (the bad one first).
    const old = (await listAcmeAccounts(path.join(tmp, 'old'))).sort((x, y) => Number(x.keyIdMatches) - Number(y.keyIdMatches));
    expect(old).toEqual([
      { directoryUrl: LE, keyId: 'a'.repeat(52), keyFile: path.join('accounts', acmeDirectoryPart(LE), 'a'.repeat(52), 'privkey'), keyIdMatches: false },
      { directoryUrl: LE, keyId: id, keyFile: path.join('accounts', acmeDirectoryPart(LE), id, 'privkey'), keyIdMatches: true },
    ]);
    expect(await listAcmeAccounts(path.join(tmp, 'none'))).toEqual([]);
    expect(missingAccounts(old, old.slice(1))).toEqual([old[0]]);
  });
});

describe('caa', () => {
  const url = 'https://acme-v02.api.letsencrypt.org/acme/acct/1371472956';
  it('parses upstream\'s record (cmdeploy/src/cmdeploy/tests/data/zftest.zone)', () => {
    const r = parseCaaLine(`0 issue "letsencrypt.org;accounturi=${url}"`);
    expect(r).toEqual({ critical: 0, issue: `letsencrypt.org;accounturi=${url}` });
    expect(parseCaaIssue('letsencrypt.org; accounturi=X ; validationmethods=http-01')).toEqual({ issuer: 'letsencrypt.org', params: { accounturi: 'X', validationmethods: 'http-01' } });
  });

  it('is ok without a pin, with the right pin, and names the value otherwise', () => {
    expect(checkCaa([{ critical: 0, issue: 'letsencrypt.org' }], undefined)).toMatchObject({ ok: true, pinned: [] });
    expect(checkCaa([{ critical: 0, issue: `letsencrypt.org;accounturi=${url}` }], url).ok).toBe(true);
    const bad = checkCaa([{ critical: 0, issue: 'letsencrypt.org;accounturi=https://acme-v02.api.letsencrypt.org/acme/acct/1' }, { critical: 0, iodef: 'mailto:x@example.org' }], url);
    expect(bad.ok).toBe(false);
    expect(bad.expected).toBe(`0 issue "letsencrypt.org;accounturi=${url}"`);
    expect(bad.reason).toContain("Let's Encrypt will refuse its renewals");
    expect(checkCaa([{ critical: 0, issue: `letsencrypt.org;accounturi=${url}` }], undefined).ok).toBe(false);
  });
});
