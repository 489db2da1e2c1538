/**
 * The external TLS files (issue 12, item 1) through two real agent processes: the old agent
 * reads the two paths its deployed chatmail.ini names (a certbot-style symlink followed), the
 * new agent writes them at the same paths, owner names mapped, mode and mtime kept, parent
 * directories made as on the old host; a rerun is a no-op; a different file on the new host is
 * replaced only when the journal's digest names it; paths inside the carried roots or the
 * agent's state dir are refused.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAgent, type AgentHandle } from '../controller/agent-client';
import { hostOps, type HostOps } from '../controller/host-ops';
import { loadPlan } from '../controller/plan';
import { failure } from './support/expect-error';
import { setupMigration, type Migration } from './support/harness';

const CERT = '/etc/letsencrypt/live/mail.example.org/fullchain.pem';
const KEY = '/etc/ssl/ext/privkey.pem';
const MTIME = new Date('2026-03-04T05:06:07.123Z');

describe('external TLS files through the agents', { timeout: 60_000 }, () => {
  let m: Migration;
  const handles: AgentHandle[] = [];
  let oldOps: HostOps;
  let newOps: HostOps;
  const certData = Buffer.from('-----BEGIN CERTIFICATE-----\n' + crypto.randomBytes(1500).toString('base64') + '\n-----END CERTIFICATE-----\n');
  const keyData = Buffer.from('-----BEGIN PRIVATE KEY-----\n' + crypto.randomBytes(120).toString('base64') + '\n-----END PRIVATE KEY-----\n');

  beforeAll(async () => {
    m = await setupMigration({
      tree: { addresses: 1, messagesPerAddress: 1 },
      prepare: async (root) => {
        // The group differs in id between the hosts: it travels by name.
        await fs.appendFile(path.join(root, 'etc/group'), 'ssl-cert:x:4111:\n');
        const ini = path.join(root, 'usr/local/lib/chatmaild/chatmail.ini');
        await fs.mkdir(path.dirname(ini), { recursive: true });
        await fs.writeFile(ini, `[params]\nmail_domain = mail.example.org\ntls_external_cert_and_key = ${CERT}  ${KEY}\n`);
        // certbot: live/<name>/fullchain.pem -> ../../archive/<name>/fullchain1.pem
        const archive = path.join(root, 'etc/letsencrypt/archive/mail.example.org');
        await fs.mkdir(archive, { recursive: true, mode: 0o700 });
        await fs.writeFile(path.join(archive, 'fullchain1.pem'), certData, { mode: 0o644 });
        await fs.mkdir(path.join(root, 'etc/letsencrypt/live/mail.example.org'), { recursive: true });
        await fs.chmod(path.join(root, 'etc/letsencrypt/live'), 0o700);
        await fs.symlink('../../archive/mail.example.org/fullchain1.pem', path.join(root, CERT.slice(1)));
        await fs.mkdir(path.join(root, 'etc/ssl/ext'), { recursive: true });
        await fs.chmod(path.join(root, 'etc/ssl/ext'), 0o710);
        await fs.chown(path.join(root, 'etc/ssl/ext'), 0, 4111);
        await fs.writeFile(path.join(root, KEY.slice(1)), keyData);
        await fs.chmod(path.join(root, KEY.slice(1)), 0o640);
        await fs.chown(path.join(root, KEY.slice(1)), 0, 4111);
        await fs.utimes(path.join(root, KEY.slice(1)), MTIME, MTIME);
      },
    });
    await fs.appendFile(path.join(m.newRoot, 'etc/group'), 'ssl-cert:x:4222:\n');
    const plan = await loadPlan(m.plan);
    for (const side of ['old', 'new'] as const) handles.push(await connectAgent(plan, side));
    oldOps = hostOps(handles[0]);
    newOps = hostOps(handles[1]);
  }, 60_000);
  afterAll(async () => {
    for (const h of handles) h.client.close();
    await m?.close();
  });

  it('carries both files at their paths, a symlink as its file, owner by name, mode, mtime and parent dirs kept; a rerun changes nothing', async () => {
    const files = await oldOps.externalTlsRead();
    expect(files.map((f) => f.path)).toEqual([CERT, KEY]);
    expect(files[0].resolved).toBe('/etc/letsencrypt/archive/mail.example.org/fullchain1.pem');
    expect(files[1].resolved).toBeUndefined();
    expect(files[1]).toMatchObject({ user: 'root', group: 'ssl-cert', mode: 0o640, sha256: crypto.createHash('sha256').update(keyData).digest('hex') });

    const written = await newOps.externalTlsWrite({ files, replace: {} });
    expect(written.map((w) => w.result)).toEqual(['written', 'written']);
    const cert = path.join(m.newRoot, CERT.slice(1));
    const key = path.join(m.newRoot, KEY.slice(1));
    expect((await fs.lstat(cert)).isFile()).toBe(true);
    expect(await fs.readFile(cert)).toEqual(certData);
    expect(await fs.readFile(key)).toEqual(keyData);
    const ks = await fs.stat(key);
    expect(ks.mode & 0o7777).toBe(0o640);
    expect(ks.gid).toBe(4222);
    expect(ks.mtime.getTime()).toBe(MTIME.getTime());
    const ds = await fs.stat(path.join(m.newRoot, 'etc/ssl/ext'));
    expect(ds.mode & 0o7777).toBe(0o710);
    expect(ds.gid).toBe(4222);
    expect((await fs.stat(path.join(m.newRoot, 'etc/letsencrypt/live'))).mode & 0o7777).toBe(0o700);
    // No temp file is left beside them.
    expect((await fs.readdir(path.dirname(key))).sort()).toEqual(['privkey.pem']);

    const again = await newOps.externalTlsWrite({ files, replace: {} });
    expect(again.map((w) => w.result)).toEqual(['unchanged', 'unchanged']);
  });

  it('refuses to replace a different file unless the journal names it as written by an earlier attempt', async () => {
    const files = await oldOps.externalTlsRead();
    const key = path.join(m.newRoot, KEY.slice(1));
    await fs.writeFile(key, 'the operator put another key here\n');
    const theirs = crypto.createHash('sha256').update('the operator put another key here\n').digest('hex');
    // The certificate comes first: the key's conflict must keep it from being written too.
    const cert = path.join(m.newRoot, CERT.slice(1));
    await fs.rm(cert);
    const err = await failure(newOps.externalTlsWrite({ files, replace: {} }));
    expect(err.code).toBe('host.tls_file_conflict');
    expect(err.message).toContain(KEY);
    expect(await fs.readFile(key, 'utf8')).toBe('the operator put another key here\n');
    await expect(fs.lstat(cert)).rejects.toThrow(/ENOENT/);
    const other = await failure(newOps.externalTlsWrite({ files, replace: { [KEY]: 'f'.repeat(64) } }));
    expect(other.code).toBe('host.tls_file_conflict');
    const w = await newOps.externalTlsWrite({ files, replace: { [KEY]: theirs } });
    expect(w.find((x) => x.path === KEY)?.result).toBe('replaced');
    expect(await fs.readFile(key)).toEqual(keyData);
  });

  it('refuses paths inside a carried root, the state dir, relative paths, and content that does not match its digest', async () => {
    const [cert] = await oldOps.externalTlsRead();
    for (const p of ['/etc/dkimkeys/x.pem', '/var/lib/acme/live/x', '/home/vmail/mail/a', '/var/lib/cmmigrate/x.pem', 'etc/x.pem', '/etc/ssl/../dkimkeys/k', '/var/lib']) {
      const err = await failure(newOps.externalTlsWrite({ files: [{ ...cert, path: p, dirs: [] }], replace: {} }));
      expect(err.code, p).toBe('host.tls_path_refused');
    }
    const bad = await failure(newOps.externalTlsWrite({ files: [{ ...cert, data: Buffer.from('tampered').toString('base64'), size: 8 }], replace: {} }));
    expect(bad.code).toBe('transfer.digest_mismatch');
    // A directory on the new host that is a symlink into a carried root does not lead the write there.
    await fs.mkdir(path.join(m.newRoot, 'etc/dkimkeys'), { recursive: true });
    await fs.symlink('../dkimkeys', path.join(m.newRoot, 'etc/ssl/linked'));
    const linked = await failure(newOps.externalTlsWrite({ files: [{ ...cert, path: '/etc/ssl/linked/cert.pem', dirs: [] }], replace: {} }));
    expect(linked.code).toBe('host.tls_path_refused');
    expect(linked.message).toContain('inside the carried root dkimkeys');
    expect(await fs.readdir(path.join(m.newRoot, 'etc/dkimkeys'))).toEqual([]);
    // Nor is a missing directory under that link made before the refusal.
    const deeper = await failure(newOps.externalTlsWrite({ files: [{ ...cert, path: '/etc/ssl/linked/sub/cert.pem', dirs: [{ path: '/etc/ssl/linked/sub', user: 'root', group: 'root', mode: 0o755 }] }], replace: {} }));
    expect(deeper.code).toBe('host.tls_path_refused');
    expect(await fs.readdir(path.join(m.newRoot, 'etc/dkimkeys'))).toEqual([]);
  });
});
