import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkDkimRecord, checkDkimRecordKey, dkimPublicKey, dkimRecordName, dkimRecordStrings, dkimRecordValue, dkimZoneValue, parseDkimTags } from '../controller/relay/dkim';

let tmp: string;
let pkcs8File: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-dkim-'));
  // As opendkim-genkey does on Debian 12: openssl 3's genrsa writes PKCS#8.
  pkcs8File = path.join(tmp, 'opendkim.private');
  execFileSync('openssl', ['genrsa', '-out', pkcs8File, '2048'], { stdio: 'ignore' });
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

/** What upstream's rdns.py get_dkim_entry runs on the host. */
function opensslPubout(file: string): string {
  return execFileSync('sh', ['-c', `openssl rsa -in ${file} -pubout 2>/dev/null | awk '/-/{next}{printf("%s",$0)}'`], { encoding: 'utf8' });
}

describe('dkim', () => {
  it('derives the public key exactly as upstream\'s openssl pipeline does, PKCS#8 and PKCS#1', async () => {
    const pem = await fsp.readFile(pkcs8File, 'utf8');
    expect(pem).toContain('BEGIN PRIVATE KEY');
    expect(dkimPublicKey(pem)).toBe(opensslPubout(pkcs8File));
    const pkcs1 = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs1', format: 'pem' }) as string;
    const f1 = path.join(tmp, 'pkcs1.private');
    await fsp.writeFile(f1, pkcs1, { mode: 0o600 });
    expect(pkcs1).toContain('BEGIN RSA PRIVATE KEY');
    expect(dkimPublicKey(pkcs1)).toBe(opensslPubout(f1));
  });

  it('names the record and formats its value as cmdeploy dns does', () => {
    expect(dkimRecordName('mail.example.org')).toBe('opendkim._domainkey.mail.example.org');
    expect(dkimRecordName('mail.example.org.')).toBe('opendkim._domainkey.mail.example.org');
    const v = dkimRecordValue('A'.repeat(392));
    expect(v).toMatch(/^v=DKIM1;k=rsa;p=A+;s=email;t=s$/);
    expect(dkimRecordStrings(v).map((s) => s.length)).toEqual([255, v.length - 255]);
    expect(dkimZoneValue(v)).toBe(`"${v.slice(0, 255)}" "${v.slice(255)}"`);
  });

  it('accepts the record upstream publishes and the one opendkim-genkey writes, in any chunking', async () => {
    const pem = await fsp.readFile(pkcs8File, 'utf8');
    const pub = dkimPublicKey(pem);
    const upstream = dkimRecordStrings(dkimRecordValue(pub));
    expect(checkDkimRecord('mail.example.org', [upstream], pem)).toMatchObject({ ok: true });
    const genkey = ['v=DKIM1; h=sha256; k=rsa; ', `p=${pub.slice(0, 100)}`, pub.slice(100)];
    expect(checkDkimRecord('mail.example.org', [['v=spf1 a ~all'], genkey], pem).ok).toBe(true);
    expect(parseDkimTags('v=DKIM1; k = rsa ;p=AB CD\t EF').get('p')).toBe('ABCDEF');
    expect(checkDkimRecordKey('mail.example.org', [upstream], pub).ok).toBe(true);
    expect(checkDkimRecordKey('mail.example.org', [upstream], pub.slice(1)).ok).toBe(false);
  });

  it('names the record and the value it must have when the key differs, is revoked or missing', async () => {
    const pem = await fsp.readFile(pkcs8File, 'utf8');
    const other = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const wrong = checkDkimRecord('mail.example.org', [dkimRecordStrings(dkimRecordValue(dkimPublicKey(other)))], pem);
    expect(wrong.ok).toBe(false);
    expect(wrong.reason).toContain('opendkim._domainkey.mail.example.org carries another public key');
    expect(wrong.expected).toBe(dkimRecordValue(dkimPublicKey(pem)));
    expect(checkDkimRecord('mail.example.org', [['v=DKIM1; p=']], pem).reason).toContain('revokes');
    expect(checkDkimRecord('mail.example.org', [], pem).reason).toContain('has no DKIM TXT record');
  });

  it('refuses what is not a private key, without echoing it', () => {
    expect(() => dkimPublicKey('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n')).toThrow(/^not a PEM private key$/);
  });
});
