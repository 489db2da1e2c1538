/**
 * The cmdeploy stand-in follows upstream's source (chatmail/relay 1.12.0; facts in
 * /work/notes/upstream-facts.md): what configure writes into carried roots, the TLS modes,
 * the postfix runtime files, the units activate and --disable-mail touch, and the legacy model.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { requireRunnableCheckout } from '../controller/relay/venv';
import { writeIdentity } from './support/relay-tree';
import { legacyStandinModel, makeStandinRelay, setUnitState, unitState, upstreamRunningUnits, type StandinRelayOptions } from './support/standin-relay';

const OLD = '127.0.0.2';
const NEW = '127.0.0.3';
const D = 'mail.example.org';

let tmp: string;
let oldRoot: string;
let newRoot: string;
let oldState: string;
let newState: string;
beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-standin-up-'));
  oldRoot = path.join(tmp, 'old');
  newRoot = path.join(tmp, 'new');
  oldState = path.join(tmp, 'host-old');
  newState = path.join(tmp, 'host-new');
  await writeIdentity(oldRoot, 5000);
  await fsp.mkdir(path.join(newRoot, 'etc'), { recursive: true });
  await fsp.writeFile(path.join(newRoot, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
  await fsp.writeFile(path.join(newRoot, 'etc/group'), 'root:x:0:\n');
  await fsp.writeFile(path.join(newRoot, 'etc/resolv.conf'), 'nameserver 127.0.0.1\n');
  await fsp.mkdir(path.join(newRoot, 'var/spool/postfix'), { recursive: true });
  for (const u of upstreamRunningUnits()) setUnitState(oldState, u, 'active');
});
afterEach(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function relayWith(o: Partial<StandinRelayOptions> = {}) {
  return makeStandinRelay({
    dir: path.join(tmp, 'relay'),
    mailDomain: D,
    hosts: { [OLD]: { role: 'old', root: oldRoot, hostState: oldState }, [NEW]: { role: 'new', root: newRoot, hostState: newState } },
    ...o,
  });
}

function cmdeploy(relayDir: string, args: string[], stages: string | null, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const e = { ...process.env, ...env };
  delete e.CMDEPLOY_STAGES;
  if (stages !== null) e.CMDEPLOY_STAGES = stages;
  return new Promise((resolve) => {
    execFile(path.join(relayDir, 'scripts/cmdeploy'), args, { cwd: relayDir, env: e }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}
const preconfigure = (dir: string, env?: NodeJS.ProcessEnv) => cmdeploy(dir, ['run', '--ssh-host', NEW], 'install,configure', env);

function owner(root: string, file: string): [string, string, number] {
  const st = fs.statSync(path.join(root, file));
  const name = (db: string, id: number) => fs.readFileSync(path.join(root, 'etc', db), 'utf8').split('\n').find((l) => Number(l.split(':')[2]) === id)?.split(':')[0] ?? String(id);
  return [name('passwd', st.uid), name('group', st.gid), st.mode & 0o7777];
}

describe('the stand-in follows upstream', { timeout: 30_000 }, () => {
  it('step 2 writes what configure writes into carried roots, and the package users', async () => {
    const relay = await relayWith();
    const r = await preconfigure(relay.dir);
    expect(r.code, r.stderr).toBe(0);
    expect(await fsp.readFile(path.join(newRoot, 'var/lib/acme/desired', D), 'utf8')).toBe(`satisfy:\n  names:\n  - ${D}\n  - mta-sts.${D}\n  - www.${D}\n`);
    expect(await fsp.readFile(path.join(newRoot, 'var/lib/acme/conf/target'), 'utf8')).toContain('ecdsa-curve: nistp256');
    expect(await fsp.readFile(path.join(newRoot, 'var/lib/acme/conf/responses'), 'utf8')).toContain('"acme-enter-email": ""');
    expect(owner(newRoot, 'var/lib/acme/conf/responses')).toEqual(['root', 'root', 0o644]);
    expect(await fsp.readFile(path.join(newRoot, 'etc/dkimkeys/KeyTable'), 'utf8')).toBe(`opendkim._domainkey.${D} ${D}:opendkim:/etc/dkimkeys/opendkim.private\n`);
    expect(await fsp.readFile(path.join(newRoot, 'etc/dkimkeys/SigningTable'), 'utf8')).toBe(`*@${D} opendkim._domainkey.${D}\n`);
    expect(owner(newRoot, 'etc/dkimkeys/KeyTable')).toEqual(['opendkim', 'opendkim', 0o644]);
    expect(owner(newRoot, 'etc/dkimkeys/opendkim.private')).toEqual(['opendkim', 'opendkim', 0o600]);
    expect(await fsp.readFile(path.join(newRoot, 'etc/dkimkeys/opendkim.txt'), 'utf8')).toMatch(/^opendkim\._domainkey\tIN\tTXT\t\( "v=DKIM1; h=sha256; k=rsa; "/);
    expect(owner(newRoot, 'var/spool/postfix/opendkim')).toEqual(['opendkim', 'opendkim', 0o750]);
    expect(owner(newRoot, `home/vmail/mail/${D}`)).toEqual(['vmail', 'vmail', 0o700]);
    expect(fs.readFileSync(path.join(newRoot, 'etc/passwd'), 'utf8')).toMatch(/^dovecot:/m);
    // postfix started by its package: the chroot copies and its pid file.
    expect(await fsp.readFile(path.join(newRoot, 'var/spool/postfix/etc/resolv.conf'), 'utf8')).toBe('nameserver 127.0.0.1\n');
    expect(await fsp.readFile(path.join(newRoot, 'var/spool/postfix/pid/master.pid'), 'utf8')).toMatch(/^ *\d+\n$/);
    expect(relay.calls()[0].started).toEqual(['postfix', 'opendkim']);
  });

  it('keeps a carried DKIM key and re-owns it, rewrites the tables, drops stale desired files', async () => {
    const relay = await relayWith();
    await preconfigure(relay.dir);
    const key = path.join(newRoot, 'etc/dkimkeys/opendkim.private');
    const pem = await fsp.readFile(key, 'utf8');
    await fsp.chown(key, 0, 0);
    await fsp.writeFile(path.join(newRoot, 'etc/dkimkeys/KeyTable'), 'edited\n');
    await fsp.writeFile(path.join(newRoot, 'var/lib/acme/desired', `${D}-old`), 'x');
    expect((await preconfigure(relay.dir)).code).toBe(0);
    expect(await fsp.readFile(key, 'utf8')).toBe(pem);
    expect(owner(newRoot, 'etc/dkimkeys/opendkim.private')[0]).toBe('opendkim');
    expect(await fsp.readFile(path.join(newRoot, 'etc/dkimkeys/KeyTable'), 'utf8')).toContain('opendkim._domainkey.');
    expect(fs.existsSync(path.join(newRoot, 'var/lib/acme/desired', `${D}-old`))).toBe(false);
  });

  it('external TLS: configure fails with upstream\'s message until both files are on the host', async () => {
    const relay = await relayWith({ iniLines: ['tls_external_cert_and_key = /etc/certs/fullchain.pem /etc/certs/key.pem'] });
    const r = await preconfigure(relay.dir);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('External TLS file not found on server: /etc/certs/fullchain.pem');
    expect(r.stderr).toContain('Deploy failed');
    await fsp.mkdir(path.join(newRoot, 'etc/certs'), { recursive: true });
    await fsp.writeFile(path.join(newRoot, 'etc/certs/fullchain.pem'), 'cert');
    expect((await preconfigure(relay.dir)).stdout).toContain('External TLS file not found on server: /etc/certs/key.pem');
    await fsp.writeFile(path.join(newRoot, 'etc/certs/key.pem'), 'key', { mode: 0o600 });
    expect((await preconfigure(relay.dir)).code).toBe(0);
    // No acme state in that mode; activate starts tls-cert-reload.path.
    expect(fs.existsSync(path.join(newRoot, 'var/lib/acme'))).toBe(false);
    expect((await cmdeploy(relay.dir, ['run', '--ssh-host', NEW], 'activate')).code).toBe(0);
    expect(unitState(newState, 'tls-cert-reload.path')).toBe('active');
    expect(unitState(newState, 'acmetool-reconcile.timer')).toBe('inactive');
  });

  it('a malformed tls_external_cert_and_key fails every call, as chatmaild raises', async () => {
    const relay = await relayWith({ iniLines: ['tls_external_cert_and_key = /only/one.pem'] });
    const r = await preconfigure(relay.dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('tls_external_cert_and_key must have two space-separated paths');
  });

  it('self-signed (a _ domain): configure makes the pair when the certificate is missing, keeps a carried one', async () => {
    const relay = await relayWith({ mailDomain: '_test.example.org' });
    expect((await preconfigure(relay.dir)).code).toBe(0);
    const cert = path.join(newRoot, 'etc/ssl/certs/mailserver.pem');
    expect(owner(newRoot, 'etc/ssl/private/mailserver.key')[2]).toBe(0o600);
    await fsp.writeFile(cert, 'carried');
    expect((await preconfigure(relay.dir)).code).toBe(0);
    expect(await fsp.readFile(cert, 'utf8')).toBe('carried');
    expect(fs.existsSync(path.join(newRoot, 'var/lib/acme'))).toBe(false);
  });

  it('--disable-mail is a full deploy: it starts again what was stopped, leaves an expire run alone, stops mail last', async () => {
    const relay = await relayWith();
    setUnitState(oldState, 'doveauth', 'inactive');
    setUnitState(oldState, 'chatmail-expire', 'activating');
    const r = await cmdeploy(relay.dir, ['run', '--ssh-host', OLD, '--disable-mail'], null);
    expect(r.code, r.stderr).toBe(0);
    const call = relay.calls()[0];
    expect(call.started).toEqual(['doveauth']);
    expect(call.stopped).toEqual(['dovecot', 'postfix']);
    expect(unitState(oldState, 'chatmail-expire.timer')).toBe('active');
    expect(fs.readFileSync(path.join(oldState, 'units/chatmail-expire'), 'utf8').trim()).toBe('activating');
    // Its configure stage ran on the old host too.
    expect(fs.existsSync(path.join(oldRoot, 'var/lib/acme/conf/responses'))).toBe(true);
    expect(fs.existsSync(path.join(oldRoot, 'etc/dkimkeys/SigningTable'))).toBe(true);
    expect(r.stdout.indexOf('Stop and disable dovecot.service')).toBeLessThan(r.stdout.indexOf('Stop and disable postfix.service'));
  });

  it('activate stops a finished expire run, starts iroh-relay without iroh_relay and mtail only with mtail_address', async () => {
    const relay = await relayWith({ iniLines: ['mtail_address = 127.0.0.1'] });
    setUnitState(newState, 'chatmail-expire', 'active');
    expect((await cmdeploy(relay.dir, ['run', '--ssh-host', NEW], 'activate')).code).toBe(0);
    expect(unitState(newState, 'chatmail-expire')).toBe('inactive');
    for (const u of ['iroh-relay', 'turnserver', 'mtail', 'filtermail-transport', 'acmetool-reconcile.timer', 'chatmail-fsreport.timer']) expect(unitState(newState, u), u).toBe('active');
  });

  it('CHATMAIL_INI names the ini it reads, as cmdeploy.py does', async () => {
    const relay = await relayWith();
    const r = await preconfigure(relay.dir, { CHATMAIL_INI: 'elsewhere.ini' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('expecting elsewhere.ini to exist, run init first?');
  });

  it('the legacy model writes nothing but users and the key, and activates only RELAY_UNITS', async () => {
    const relay = await relayWith({ model: legacyStandinModel() });
    expect((await preconfigure(relay.dir)).code).toBe(0);
    expect(fs.existsSync(path.join(newRoot, 'var/lib/acme'))).toBe(false);
    expect(fs.existsSync(path.join(newRoot, 'etc/dkimkeys/KeyTable'))).toBe(false);
    expect(fs.existsSync(path.join(newRoot, 'var/spool/postfix/pid'))).toBe(false);
    expect(await fsp.readFile(path.join(newRoot, 'etc/dkimkeys/opendkim.private'), 'utf8')).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/);
    expect((await cmdeploy(relay.dir, ['run', '--ssh-host', NEW], 'activate')).code).toBe(0);
    expect(unitState(newState, 'turnserver')).toBe('inactive');
    expect((await cmdeploy(relay.dir, ['run', '--ssh-host', OLD, '--disable-mail'], null)).code).toBe(0);
    expect(relay.calls().at(-1)?.stopped).toEqual(['postfix', 'dovecot']);
  });

  it('has a venv as initenv.sh leaves it, unless told otherwise', async () => {
    const relay = await relayWith();
    expect(await requireRunnableCheckout(relay.dir)).toEqual({ activate: true, cmdeploy: true, pyinfraVersion: '3.2.0' });
    const old = await makeStandinRelay({ dir: path.join(tmp, 'relay-old'), hosts: {}, venvPyinfra: '2.9.2' });
    await expect(requireRunnableCheckout(old.dir)).rejects.toThrow(/pyinfra 2\.9\.2/);
    const none = await makeStandinRelay({ dir: path.join(tmp, 'relay-none'), hosts: {}, venvPyinfra: null });
    await expect(requireRunnableCheckout(none.dir)).rejects.toThrow(/scripts\/initenv\.sh has not been run/);
  });
});
