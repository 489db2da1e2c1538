/**
 * The rehearsal environment itself: the behaving cmdeploy stand-in (strict about argv,
 * CMDEPLOY_STAGES, working directory and host; each action's effect; faults), the relay's
 * mail ports following the unit states and presenting the certificate of the host's root,
 * and the whole setup: plan, agents, NSD switch, the journal watcher.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { promises as dnsp } from 'node:dns';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { parse as parseToml } from 'smol-toml';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readChatmailIni } from '../controller/relay/chatmail-ini';
import { detectStageSupport } from '../controller/relay/stages';
import { freePort } from './support/harness';
import { setupRehearsal, MAIL_DOMAIN, type Rehearsal } from './support/rehearsal';
import { startRelayServices, SERVICE_PORTS, type RelayServices, type ServicePort } from './support/relay-services';
import { writeIdentity } from './support/relay-tree';
import { makeStandinRelay, RELAY_UNITS, setUnitState, unitState, upstreamRunningUnits, type StandinRelay } from './support/standin-relay';
import { selfSignedCertificate } from './support/test-certs';

const OLD = '127.0.0.2';
const NEW = '127.0.0.3';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the stand-in as cmmigrate would: `stages` null removes CMDEPLOY_STAGES. */
function cmdeploy(relayDir: string, args: string[], o: { stages: string | null; cwd?: string }): Promise<Run> {
  const env = { ...process.env };
  delete env.CMDEPLOY_STAGES;
  if (o.stages !== null) env.CMDEPLOY_STAGES = o.stages;
  return new Promise((resolve) => {
    execFile(path.join(relayDir, 'scripts/cmdeploy'), args, { cwd: o.cwd ?? relayDir, env }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
  });
}

function units(hostState: string): Record<string, string> {
  return Object.fromEntries(RELAY_UNITS.map((u) => [u, unitState(hostState, u)]));
}

function idOf(file: string, name: string): number | undefined {
  const line = fs.readFileSync(file, 'utf8').split('\n').find((l) => l.split(':')[0] === name);
  return line === undefined ? undefined : Number(line.split(':')[2]);
}

describe('the cmdeploy stand-in', () => {
  let tmp: string;
  let relay: StandinRelay;
  let oldRoot: string;
  let newRoot: string;
  let oldState: string;
  let newState: string;

  beforeEach(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-standin-'));
    oldRoot = path.join(tmp, 'old');
    newRoot = path.join(tmp, 'new');
    oldState = path.join(tmp, 'host-old');
    newState = path.join(tmp, 'host-new');
    await writeIdentity(oldRoot, 5000);
    await fsp.mkdir(path.join(newRoot, 'etc'), { recursive: true });
    await fsp.writeFile(path.join(newRoot, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
    await fsp.writeFile(path.join(newRoot, 'etc/group'), 'root:x:0:\n');
    for (const u of upstreamRunningUnits()) setUnitState(oldState, u, 'active');
    relay = await makeStandinRelay({
      dir: path.join(tmp, 'relay'),
      hosts: { [OLD]: { role: 'old', root: oldRoot, hostState: oldState }, [NEW]: { role: 'new', root: newRoot, hostState: newState } },
    });
  });
  afterEach(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('is a checkout that stage detection accepts, with chatmail.ini and a HEAD commit', async () => {
    const support = await detectStageSupport(relay.dir);
    expect(support).toMatchObject({ supported: true, version: '1.8.0' });
    expect((await readChatmailIni(relay.dir))?.mailDomain).toBe(MAIL_DOMAIN);
    expect(relay.head).toMatch(/^[0-9a-f]{40}$/);
  });

  const wrong: Array<[string, string[], string | null, string]> = [
    ['an unknown option', ['run', '--ssh-host', NEW, '--dry-run'], 'install,configure', 'argv'],
    ['--disable-mail before --ssh-host', ['run', '--disable-mail', '--ssh-host', OLD], null, 'argv'],
    ['no subcommand', ['--ssh-host', NEW], 'activate', 'argv'],
    ['an unknown host', ['run', '--ssh-host', '127.0.0.9'], 'install,configure', 'none of the hosts'],
    ['the mail domain as host', ['run', '--ssh-host', MAIL_DOMAIN, '--disable-mail'], null, 'none of the hosts'],
    ['a full deploy of the new host', ['run', '--ssh-host', NEW], null, 'full deploy'],
    ['a trailing space in the stages', ['run', '--ssh-host', NEW], 'install,configure ', 'expected exactly'],
    ['a space after the comma', ['run', '--ssh-host', NEW], 'install, configure', 'expected exactly'],
    ['all three stages for the new host', ['run', '--ssh-host', NEW], 'install,configure,activate', 'expected exactly'],
    ['stages with --disable-mail', ['run', '--ssh-host', OLD, '--disable-mail'], 'activate', 'must be absent'],
    ['an empty CMDEPLOY_STAGES for the old host', ['run', '--ssh-host', OLD, '--disable-mail'], '', 'must be absent'],
    ['--disable-mail for the new host', ['run', '--ssh-host', NEW, '--disable-mail'], null, '--disable-mail for the new host'],
    ['install,configure for the old host', ['run', '--ssh-host', OLD], 'install,configure', 'must be absent'],
  ];
  it.each(wrong)('refuses %s: exit 1, "unexpected" logged, no effect', async (_what, args, stages, why) => {
    const before = { old: units(oldState), new: units(newState), passwd: await fsp.readFile(path.join(newRoot, 'etc/passwd'), 'utf8') };
    const r = await cmdeploy(relay.dir, args, { stages });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unexpected call');
    const calls = relay.calls();
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ argv: args, stages, exit: 1, action: null });
    expect(calls[0].verdict).toMatch(/^unexpected: /);
    expect(calls[0].verdict).toContain(why);
    expect({ old: units(oldState), new: units(newState), passwd: await fsp.readFile(path.join(newRoot, 'etc/passwd'), 'utf8') }).toEqual(before);
    expect(fs.existsSync(path.join(newRoot, 'etc/dkimkeys'))).toBe(false);
  });

  it('refuses a working directory other than the checkout root, and accepts the root through a symlink', async () => {
    const r = await cmdeploy(relay.dir, ['run', '--ssh-host', NEW], { stages: 'install,configure', cwd: path.join(relay.dir, 'scripts') });
    expect(r.code).toBe(1);
    expect(relay.calls()[0].verdict).toMatch(/^unexpected: working directory .*scripts, expected the checkout root/);
    expect(units(newState).postfix).toBe('inactive');

    const link = path.join(tmp, 'relay-link');
    await fsp.symlink(relay.dir, link);
    const ok = await cmdeploy(relay.dir, ['run', '--ssh-host', NEW], { stages: 'activate', cwd: link });
    expect(ok.code).toBe(0);
    expect(relay.calls()[1]).toMatchObject({ verdict: 'ok', action: 'activate', exit: 0 });
  });

  it('install,configure on the new host: the relay users at other ids, a fresh DKIM key, postfix and opendkim left running', async () => {
    const r = await cmdeploy(relay.dir, ['run', '--ssh-host', NEW], { stages: 'install,configure' });
    expect(r.code).toBe(0);
    const passwd = path.join(newRoot, 'etc/passwd');
    const group = path.join(newRoot, 'etc/group');
    expect(idOf(passwd, 'root')).toBe(0);
    for (const u of ['vmail', 'opendkim', 'postfix', 'iroh']) {
      expect(idOf(passwd, u)).toBeDefined();
      expect(idOf(passwd, u)).not.toBe(idOf(path.join(oldRoot, 'etc/passwd'), u));
    }
    expect(idOf(group, 'postdrop')).toBeDefined();
    const key = path.join(newRoot, 'etc/dkimkeys/opendkim.private');
    const st = await fsp.stat(key);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(idOf(passwd, 'opendkim'));
    expect((await fsp.stat(path.dirname(key))).mode & 0o777).toBe(0o750);
    const pem = await fsp.readFile(key, 'utf8');
    // opendkim-genkey's `openssl genrsa` on Debian 12 (openssl 3) writes PKCS#8.
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(units(newState)).toMatchObject({ postfix: 'active', opendkim: 'active', dovecot: 'inactive', nginx: 'inactive' });
    expect(relay.calls()).toEqual([expect.objectContaining({ action: 'preconfigure', verdict: 'ok', exit: 0, host: NEW, stages: 'install,configure', started: ['postfix', 'opendkim'] })]);

    // A rerun keeps the users' ids and the key (generated only when absent), and starts postfix again if it was stopped.
    const ids = await fsp.readFile(passwd, 'utf8');
    setUnitState(newState, 'postfix', 'inactive');
    expect((await cmdeploy(relay.dir, ['run', '--ssh-host', NEW], { stages: 'install,configure' })).code).toBe(0);
    expect(await fsp.readFile(passwd, 'utf8')).toBe(ids);
    expect(await fsp.readFile(key, 'utf8')).toBe(pem);
    expect(units(newState).postfix).toBe('active');
  });

  it('--disable-mail on the old host stops dovecot and postfix (in upstream\'s order) and nothing else', async () => {
    const r = await cmdeploy(relay.dir, ['run', '--ssh-host', OLD, '--disable-mail'], { stages: null });
    expect(r.code).toBe(0);
    const expected = Object.fromEntries(RELAY_UNITS.map((u) => [u, u === 'postfix' || u === 'dovecot' ? 'inactive' : 'active']));
    expect(units(oldState)).toEqual(expected);
    expect(relay.calls()[0]).toMatchObject({ action: 'disable-mail', stages: null, verdict: 'ok', stopped: ['dovecot', 'postfix'] });
  });

  it('activate starts what is not running and does not restart what is', async () => {
    setUnitState(newState, 'postfix', 'active');
    const before = (await fsp.stat(path.join(newState, 'units/postfix'))).ino;
    const r = await cmdeploy(relay.dir, ['run', '--ssh-host', NEW], { stages: 'activate' });
    expect(r.code).toBe(0);
    expect(Object.values(units(newState)).every((s) => s === 'active')).toBe(true);
    expect((await fsp.stat(path.join(newState, 'units/postfix'))).ino).toBe(before);
    expect(relay.calls()[0].started).toEqual(upstreamRunningUnits().filter((u) => u !== 'postfix'));
  });

  it('a full deploy of the old host (rollback) starts mail again', async () => {
    for (const u of ['postfix', 'dovecot', 'doveauth']) setUnitState(oldState, u, 'inactive');
    expect((await cmdeploy(relay.dir, ['run', '--ssh-host', OLD], { stages: null })).code).toBe(0);
    expect(Object.values(units(oldState)).every((s) => s === 'active')).toBe(true);
    expect(relay.calls()[0]).toMatchObject({ action: 'enable-mail', started: ['doveauth', 'dovecot', 'postfix'] });
  });

  it('fail-<action> exits 1 with an error and no effect; mail keeps running after a failed --disable-mail', async () => {
    const runs: Array<[string, string[], string | null]> = [
      ['preconfigure', ['run', '--ssh-host', NEW], 'install,configure'],
      ['disable-mail', ['run', '--ssh-host', OLD, '--disable-mail'], null],
      ['activate', ['run', '--ssh-host', NEW], 'activate'],
    ];
    for (const [action] of runs) relay.setFault(`fail-${action}`, true);
    const before = { old: units(oldState), new: units(newState) };
    for (const [action, args, stages] of runs) {
      const r = await cmdeploy(relay.dir, args, { stages });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('Deploy failed');
      expect(r.stdout).toContain('pyinfra error');
      expect(relay.calls().at(-1)).toMatchObject({ action, verdict: 'ok', exit: 1, fault: `fail-${action}` });
    }
    expect({ old: units(oldState), new: units(newState) }).toEqual(before);
    expect(fs.existsSync(path.join(newRoot, 'etc/dkimkeys'))).toBe(false);
    expect(idOf(path.join(newRoot, 'etc/passwd'), 'vmail')).toBeUndefined();

    relay.setFault('fail-disable-mail', false);
    expect((await cmdeploy(relay.dir, ['run', '--ssh-host', OLD, '--disable-mail'], { stages: null })).code).toBe(0);
    expect(units(oldState).postfix).toBe('inactive');

    relay.setFault('fail-enable-mail', true);
    expect((await cmdeploy(relay.dir, ['run', '--ssh-host', OLD], { stages: null })).code).toBe(1);
    expect(units(oldState).postfix).toBe('inactive');
  }, 30_000);

  it('keep-mail-<unit>: --disable-mail exits 0 but that unit keeps running', async () => {
    relay.setFault('keep-mail-postfix', true);
    const r = await cmdeploy(relay.dir, ['run', '--ssh-host', OLD, '--disable-mail'], { stages: null });
    expect(r.code).toBe(0);
    expect(units(oldState)).toMatchObject({ postfix: 'active', dovecot: 'inactive' });
    expect(relay.calls()[0]).toMatchObject({ verdict: 'ok', exit: 0, fault: 'keep-mail-postfix', stopped: ['dovecot'] });
  });

  it('setFault refuses names it does not know', () => {
    expect(() => relay.setFault('fail-disable_mail', true)).toThrow(/unknown stand-in fault/);
    expect(() => relay.setFault('keep-mail-exim', true)).toThrow(/unknown stand-in fault/);
  });
});

/** The certificate a TLS port presents for the mail domain, and whether `ca` trusts it. */
function presented(endpoint: string, ca?: string): Promise<{ fingerprint256: string; subject: string; authorized: boolean }> {
  const [host, port] = [endpoint.slice(0, endpoint.lastIndexOf(':')), Number(endpoint.slice(endpoint.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host, port, servername: MAIL_DOMAIN, ca, rejectUnauthorized: false }, () => {
      const c = s.getPeerCertificate();
      resolve({ fingerprint256: c.fingerprint256, subject: String(c.subject.CN), authorized: s.authorized });
      s.end();
    });
    s.on('error', reject);
  });
}

/** The first bytes a plain port sends, or the connection error's code. */
function greeting(endpoint: string): Promise<string> {
  const [host, port] = [endpoint.slice(0, endpoint.lastIndexOf(':')), Number(endpoint.slice(endpoint.lastIndexOf(':') + 1))];
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.setEncoding('utf8');
    s.once('data', (d: string) => {
      resolve(d);
      s.destroy();
    });
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
}

const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256;

/** Puts a certificate into `root` the way acmetool lays it out: live/<name> a relative symlink into certs/. */
async function putCertificate(root: string, id: string, cert: { cert: string; key: string }): Promise<void> {
  const acme = path.join(root, 'var/lib/acme');
  await fsp.mkdir(path.join(acme, 'certs', id), { recursive: true });
  await fsp.mkdir(path.join(acme, 'keys', id), { recursive: true });
  await fsp.mkdir(path.join(acme, 'live'), { recursive: true });
  await fsp.writeFile(path.join(acme, 'certs', id, 'fullchain'), cert.cert);
  await fsp.writeFile(path.join(acme, 'keys', id, 'privkey'), cert.key, { mode: 0o600 });
  await fsp.symlink(`../../keys/${id}/privkey`, path.join(acme, 'certs', id, 'privkey'));
  await fsp.rm(path.join(acme, 'live', MAIL_DOMAIN), { force: true });
  await fsp.symlink(`../certs/${id}`, path.join(acme, 'live', MAIL_DOMAIN));
}

describe('the relay services', () => {
  let tmp: string;
  let state: string;
  let root: string;
  let services: RelayServices | undefined;
  let endpoints: Record<ServicePort, string>;

  beforeEach(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-services-'));
    state = path.join(tmp, 'state');
    root = path.join(tmp, 'root');
    await fsp.mkdir(root);
    const ports: number[] = [];
    while (ports.length < SERVICE_PORTS.length) {
      const p = await freePort(NEW);
      if (!ports.includes(p)) ports.push(p);
    }
    endpoints = Object.fromEntries(SERVICE_PORTS.map((p, i) => [p, `${NEW}:${ports[i]}`])) as Record<ServicePort, string>;
  });
  afterEach(async () => {
    await services?.stop();
    services = undefined;
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('listen only while the serving unit is active, and greet', async () => {
    services = await startRelayServices({ hostState: state, root, mailDomain: MAIL_DOMAIN, endpoints });
    expect(services.listening()).toEqual([]);
    expect(await greeting(endpoints[25])).toBe('ECONNREFUSED');

    setUnitState(state, 'postfix', 'active');
    await services.refresh();
    expect(services.listening()).toEqual([25, 465, 587]);
    expect(await greeting(endpoints[25])).toBe(`220 ${MAIL_DOMAIN} ESMTP\r\n`);
    expect(await greeting(endpoints[587])).toBe(`220 ${MAIL_DOMAIN} ESMTP\r\n`);
    expect(await greeting(endpoints[993])).toBe('ECONNREFUSED');

    setUnitState(state, 'dovecot', 'active');
    setUnitState(state, 'nginx', 'active');
    setUnitState(state, 'postfix', 'inactive');
    // No refresh: the poll notices within a few hundred milliseconds.
    await expect.poll(() => services!.listening(), { timeout: 3000 }).toEqual([143, 993, 443, 80]);
    expect(await greeting(endpoints[25])).toBe('ECONNREFUSED');
    // Dovecot's plain IMAP port asks for STARTTLS before a login (`ssl = required`).
    expect(await greeting(endpoints[143])).toMatch(/^\* OK \[CAPABILITY .* STARTTLS LOGINDISABLED\] Dovecot ready\.\r\n$/);
  });

  it('present the certificate of the root, read when the service starts; snakeoil while there is none', async () => {
    const relayCert = await selfSignedCertificate({ dnsNames: [MAIL_DOMAIN] });
    setUnitState(state, 'postfix', 'active');
    services = await startRelayServices({ hostState: state, root, mailDomain: MAIL_DOMAIN, endpoints });
    const before = await presented(endpoints[465], relayCert.cert);
    expect(before.subject).toBe('debian');
    expect(before.authorized).toBe(false);
    expect(services.certificateSource(465)).toBe('snakeoil');

    // The certificate arrives (a final sync) and dovecot starts after it: dovecot has it, the running postfix not.
    await putCertificate(root, 'c1', relayCert);
    setUnitState(state, 'dovecot', 'active');
    await services.refresh();
    const imaps = await presented(endpoints[993], relayCert.cert);
    expect(imaps.fingerprint256).toBe(fingerprint(relayCert.cert));
    expect(imaps.authorized).toBe(true);
    expect((await presented(endpoints[465])).subject).toBe('debian');

    // A restart (the unit file rewritten while active) reads it.
    setUnitState(state, 'postfix', 'active');
    await services.refresh();
    expect((await presented(endpoints[465], relayCert.cert)).authorized).toBe(true);
    expect(services.certificateSource(465)).toBe('root');
  });

  it('a closed port never listens until the fault is lifted', async () => {
    for (const u of ['postfix', 'dovecot', 'nginx']) setUnitState(state, u, 'active');
    services = await startRelayServices({ hostState: state, root, mailDomain: MAIL_DOMAIN, endpoints, closed: [587, 443] });
    expect(services.listening()).toEqual([25, 465, 143, 993, 80]);
    expect(await greeting(endpoints[587])).toBe('ECONNREFUSED');
    await services.setClosed([]);
    expect(services.listening()).toEqual([25, 465, 587, 143, 993, 443, 80]);
    expect(await greeting(endpoints[587])).toBe(`220 ${MAIL_DOMAIN} ESMTP\r\n`);
    await services.setClosed([25]);
    expect(await greeting(endpoints[25])).toBe('ECONNREFUSED');
  });
});

describe('a rehearsal', () => {
  let r: Rehearsal;
  beforeAll(async () => {
    r = await setupRehearsal({ dnsTtl: 600 });
  }, 120_000);
  afterAll(async () => {
    await r?.close();
    if (r) expect(fs.existsSync(r.dir)).toBe(false);
  }, 60_000);

  it('starts as a running old relay and an empty new host, with the full plan', async () => {
    const plan = parseToml(await fsp.readFile(r.plan, 'utf8')) as any;
    expect(plan).toMatchObject({
      mail_domain: MAIL_DOMAIN,
      state_dir: '.cmmigrate',
      relay_dir: r.relayDir,
      old: { host: OLD, agent: r.old.address, ssh: `root@${OLD}` },
      new: { host: NEW, agent: r.new.address, ssh: `root@${NEW}`, ipv4: NEW },
      relay: { mailboxes_dir: '/home/vmail/mail' },
      dns: { servers: [r.nsd.endpoint] },
      checks: { old_tls: r.ports.old[993], new_ports: { 25: r.ports.new[25], 465: r.ports.new[465], 587: r.ports.new[587], 993: r.ports.new[993], 443: r.ports.new[443] } },
    });
    expect(plan.new.ipv6).toBeUndefined();
    expect(plan.owners).toBeUndefined();
    for (const side of ['old', 'new']) expect(fs.existsSync(path.join(r.dir, '.cmmigrate/tls', side))).toBe(true);

    expect(await fsp.readFile(path.join(r.oldRoot, 'etc/chatmail-version'), 'utf8')).toBe(`${r.relayHead}\n`);
    expect(Object.values(units(r.oldHostState)).every((s) => s === 'active')).toBe(true);
    expect(Object.values(units(r.newHostState)).every((s) => s === 'inactive')).toBe(true);
    expect(await fsp.readFile(path.join(r.newRoot, 'etc/passwd'), 'utf8')).toBe('root:x:0:0:root:/root:/bin/bash\n');

    // The old host's IMAPS presents the relay's real certificate, trusted through ca_file;
    // the acmetool links stay relative.
    expect(await fsp.readlink(path.join(r.oldRoot, 'var/lib/acme/live', MAIL_DOMAIN))).toMatch(/^\.\.\/certs\//);
    const ca = await fsp.readFile(plan.checks.ca_file, 'utf8');
    const old993 = await presented(plan.checks.old_tls, ca);
    expect(old993).toMatchObject({ authorized: true, fingerprint256: fingerprint(ca) });
    expect(r.services.new.listening()).toEqual([]);
  });

  it('agents, stand-in and services fit: preconfigure, a final sync, verify and activate make the new host serve the relay', async () => {
    // The current plan loader knows only these keys; `cmmigrate run` reads plan.toml itself.
    const basic = path.join(r.dir, 'basic-plan.toml');
    await fsp.writeFile(
      basic,
      `mail_domain = "${MAIL_DOMAIN}"\nstate_dir = ".cmmigrate"\n[old]\nhost = "${OLD}"\nagent = "${r.old.address}"\n[new]\nhost = "${NEW}"\nagent = "${r.new.address}"\n`,
    );
    expect((await r.run(['agents', '--plan', basic])).code).toBe(0);

    const pre = await cmdeploy(r.relayDir, ['run', '--ssh-host', NEW], { stages: 'install,configure' });
    expect(pre.code).toBe(0);
    const newKey = path.join(r.newRoot, 'etc/dkimkeys/opendkim.private');
    const oldKey = await fsp.readFile(path.join(r.oldRoot, 'etc/dkimkeys/opendkim.private'));
    expect((await fsp.readFile(newKey)).equals(oldKey)).toBe(false);
    // No refresh: the stand-in returns once the services follow the units it started.
    expect(r.services.new.listening()).toEqual([25, 465, 587]); // postfix, started by its package
    expect(r.services.new.certificateSource(465)).toBe('snakeoil');

    const sync = await r.run(['sync', '--plan', basic, '--phase', 'final'], 120_000);
    expect(sync.code, sync.stderr).toBe(0);
    const verify = await r.run(['verify', '--plan', basic], 120_000);
    expect(verify.code, verify.stderr).toBe(0);
    expect((await fsp.readFile(newKey)).equals(oldKey)).toBe(true);

    // activate starts dovecot and nginx, which read the carried certificate; the running postfix keeps its snakeoil.
    expect((await cmdeploy(r.relayDir, ['run', '--ssh-host', NEW], { stages: 'activate' })).code).toBe(0);
    expect(r.services.new.listening()).toEqual([25, 465, 587, 143, 993, 443, 80]);
    const ca = await fsp.readFile(path.join(r.dir, 'relay-cert.pem'), 'utf8');
    expect((await presented(r.ports.new[993], ca)).authorized).toBe(true);
    expect((await presented(r.ports.new[443], ca)).authorized).toBe(true);
    expect((await presented(r.ports.new[465], ca)).authorized).toBe(false);
    expect(r.calls().map((c) => [c.action, c.verdict])).toEqual([
      ['preconfigure', 'ok'],
      ['activate', 'ok'],
    ]);
  }, 180_000);

  it('restartAgent brings an agent back on the same address', async () => {
    const before = r.old.child.pid;
    await r.restartAgent('old');
    expect(r.old.child.pid).not.toBe(before);
    const basic = path.join(r.dir, 'basic-plan.toml');
    expect((await r.run(['agents', '--plan', basic])).code).toBe(0);
  }, 60_000);

  const resolver = (): dnsp.Resolver => {
    const res = new dnsp.Resolver({ timeout: 500, tries: 2 });
    res.setServers([r.nsd.endpoint]);
    return res;
  };

  it('switchDns: NSD serves the new A and no AAAA, at the same TTL', async () => {
    const res = resolver();
    expect(await res.resolve4(MAIL_DOMAIN, { ttl: true })).toEqual([{ address: OLD, ttl: 600 }]);
    expect(await res.resolve6(MAIL_DOMAIN)).toEqual(['2001:db8::2']);
    expect(await res.resolveNs('example.org')).toEqual(['ns1.example.org']);
    await r.switchDns();
    expect(await res.resolve4(MAIL_DOMAIN, { ttl: true })).toEqual([{ address: NEW, ttl: 600 }]);
    await expect(res.resolve6(MAIL_DOMAIN)).rejects.toMatchObject({ code: 'ENODATA' });
    expect(r.dnsSwitchedAt).toBeInstanceOf(Date);
  });

  it('autoSwitchDns waits for step 5 to be running in the journal, then switches after the delay', async () => {
    r.dnsSwitchedAt = undefined;
    const journal = path.join(r.dir, '.cmmigrate/journal.json');
    const write = async (state: string): Promise<void> => {
      const steps = Object.fromEntries(['preflight', '1', '2', '3', '4', '5', '6'].map((id) => [id, { state: id < '5' || id === 'preflight' ? 'done' : 'pending' }]));
      steps['5'] = { state };
      await fsp.writeFile(`${journal}.tmp`, JSON.stringify({ steps }));
      await fsp.rename(`${journal}.tmp`, journal);
    };
    await write('pending');
    const stop = r.autoSwitchDns(300);
    try {
      await new Promise((res) => setTimeout(res, 500));
      expect(r.dnsSwitchedAt).toBeUndefined();
      await write('running');
      const running = Date.now();
      await expect.poll(() => r.dnsSwitchedAt, { timeout: 5000 }).toBeInstanceOf(Date);
      expect(r.dnsSwitchedAt!.getTime() - running).toBeGreaterThanOrEqual(300);
      expect(r.journal().steps['5'].state).toBe('running');
      expect(await resolver().resolve4(MAIL_DOMAIN)).toEqual([NEW]);
    } finally {
      stop();
    }
  }, 30_000);
});
