import * as crypto from 'node:crypto';
import { once } from 'node:events';
import { promises as fsp } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runInit, type InitOptions } from '../controller/ops/init';
import { loadPlan } from '../controller/plan';
import { ensurePki } from '../controller/pki';
import { loadTls, type TlsMaterial } from '../controller/tls-material';
import { failure } from './support/expect-error';

let dir: string;
beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-init-'));
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

function options(extra: Partial<InitOptions> = {}): InitOptions {
  return { plan: path.join(dir, 'move', 'plan.toml'), domain: 'mail.example.org', old: '127.0.0.2', new: '127.0.0.3', ...extra };
}

const tlsDir = (): string => path.join(dir, 'move', '.cmmigrate', 'tls');
const read = (...p: string[]): Promise<Buffer> => fsp.readFile(path.join(tlsDir(), ...p));
const mode = async (...p: string[]): Promise<number> => (await fsp.stat(path.join(tlsDir(), ...p))).mode & 0o777;
async function cert(...p: string[]): Promise<crypto.X509Certificate> {
  return new crypto.X509Certificate(await read(...p));
}
/** Whether a TLS client checking `host` would accept this certificate. */
function validFor(c: crypto.X509Certificate, host: string): boolean {
  return tls.checkServerIdentity(host, c.toLegacyObject()) === undefined;
}

describe('runInit', () => {
  it('writes the plan and the whole TLS layout', async () => {
    const result = await runInit(options());
    const planFile = path.join(dir, 'move', 'plan.toml');
    expect(result).toMatchObject({ planFile, tlsDir: tlsDir(), caCreated: true, planWritten: true });
    expect(result.lines[0]).toBe(`wrote plan ${planFile}`);
    expect(result.lines.join('\n')).toContain(
      `agent material for old: ${path.join(tlsDir(), 'old')} (for IP:127.0.0.2; cmmigrate install-agent old installs it with the agent, listening on 127.0.0.2:7826)`,
    );

    const plan = await loadPlan(planFile);
    expect(plan.tlsDir).toBe(tlsDir());
    expect(plan.old.agent).toBe('127.0.0.2:7826');
    expect(plan.new.agent).toBe('127.0.0.3:7826');

    const files = {
      ca: ['ca.crt', 'ca.key'],
      controller: ['ca.crt', 'controller.crt', 'controller.key'],
      old: ['ca.crt', 'agent.crt', 'agent.key'],
      new: ['ca.crt', 'agent.crt', 'agent.key'],
    };
    const caPem = await read('ca', 'ca.crt');
    for (const [sub, names] of Object.entries(files)) {
      expect((await fsp.readdir(path.join(tlsDir(), sub))).sort()).toEqual([...names].sort());
      expect(await mode(sub)).toBe(0o700);
      for (const name of names) {
        const text = (await read(sub, name)).toString();
        if (name.endsWith('.key')) {
          expect(await mode(sub, name)).toBe(0o600);
          expect(text).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
          expect(crypto.createPrivateKey(text).asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
        } else {
          expect(text).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
        }
      }
      if (sub !== 'ca') expect((await read(sub, 'ca.crt')).equals(caPem)).toBe(true);
    }

    const ca = await cert('ca', 'ca.crt');
    expect(ca.ca).toBe(true);
    expect(ca.subject).toMatch(/^O=cmmigrate\nCN=cmmigrate CA for mail\.example\.org [0-9a-f]{8}$/);
    expect(ca.checkPrivateKey(crypto.createPrivateKey(await read('ca', 'ca.key')))).toBe(true);
    expect(Date.parse(ca.validFrom)).toBeLessThan(Date.now() - 60_000);
    expect(Date.parse(ca.validTo)).toBeGreaterThan(Date.now() + 360 * 86_400_000);

    const ctl = await cert('controller', 'controller.crt');
    expect(ctl.toLegacyObject().subject).toMatchObject({ CN: 'cmmigrate controller', OU: 'controller', O: 'cmmigrate' });
    expect(ctl.keyUsage).toEqual([CLIENT_AUTH]);
    expect(ctl.subjectAltName).toBe('DNS:cmmigrate-controller');
    expect(ctl.ca).toBe(false);
    expect(ctl.checkIssued(ca) && ctl.verify(ca.publicKey)).toBe(true);

    for (const [side, ip, other] of [['old', '127.0.0.2', '127.0.0.3'], ['new', '127.0.0.3', '127.0.0.2']]) {
      const agent = await cert(side, 'agent.crt');
      expect(agent.toLegacyObject().subject).toMatchObject({ CN: `cmmigrate agent ${side}`, OU: 'agent', O: 'cmmigrate' });
      expect([...(agent.keyUsage ?? [])].sort()).toEqual([SERVER_AUTH, CLIENT_AUTH]);
      expect(agent.subjectAltName).toBe(`IP Address:${ip}`);
      expect(validFor(agent, ip)).toBe(true);
      expect(validFor(agent, other)).toBe(false);
      expect(agent.checkIssued(ca) && agent.verify(ca.publicKey)).toBe(true);
      expect(agent.checkPrivateKey(crypto.createPrivateKey(await read(side, 'agent.key')))).toBe(true);
    }
  });

  it('puts IPv6 hosts, names and agent addresses into the SANs', async () => {
    const result = await runInit(
      options({ old: '::1', new: 'relay.example.org', oldAgent: '[::1]:7900', newAgent: '127.0.0.3:7826' }),
    );
    const plan = await loadPlan(result.planFile);
    expect(plan.old).toMatchObject({ host: '::1', agent: '[::1]:7900', ssh: 'root@::1' });
    expect(plan.new).toMatchObject({ host: 'relay.example.org', agent: '127.0.0.3:7826' });

    const oldCert = await cert('old', 'agent.crt');
    expect(validFor(oldCert, '::1')).toBe(true);
    expect(validFor(oldCert, '0:0:0:0:0:0:0:1')).toBe(true);
    expect(validFor(oldCert, '127.0.0.2')).toBe(false);
    const newCert = await cert('new', 'agent.crt');
    expect(newCert.subjectAltName).toBe('DNS:relay.example.org, IP Address:127.0.0.3');
    expect(validFor(newCert, 'relay.example.org')).toBe(true);
    expect(validFor(newCert, '127.0.0.3')).toBe(true);
    expect(result.lines.join('\n')).toContain('install-agent old installs it with the agent, listening on [::1]:7900');
  });

  it('changes nothing when run again, and --force makes a new CA', async () => {
    await runInit(options());
    const names = [['ca', 'ca.crt'], ['ca', 'ca.key'], ['controller', 'controller.crt'], ['old', 'agent.crt'], ['new', 'agent.key']];
    const before = await Promise.all(names.map((n) => read(...n)));
    const planText = await fsp.readFile(options().plan, 'utf8');

    const again = await runInit(options());
    expect(again).toMatchObject({ caCreated: false, planWritten: false });
    expect(again.lines).toContain(`plan ${again.planFile} is up to date`);
    expect(again.lines.some((l) => l.startsWith('kept existing CA') && l.endsWith('(use --force for a new one)'))).toBe(true);
    const after = await Promise.all(names.map((n) => read(...n)));
    after.forEach((b, i) => expect(b.equals(before[i]), names[i].join('/')).toBe(true));
    expect(await fsp.readFile(options().plan, 'utf8')).toBe(planText);

    const forced = await runInit(options({ force: true }));
    expect(forced.caCreated).toBe(true);
    expect((await read('ca', 'ca.crt')).equals(before[0])).toBe(false);
    expect((await read('old', 'agent.crt')).equals(before[3])).toBe(false);
    const ca = await cert('ca', 'ca.crt');
    expect((await cert('old', 'agent.crt')).checkIssued(ca)).toBe(true);
    expect((await read('old', 'ca.crt')).equals(await read('ca', 'ca.crt'))).toBe(true);
  });

  it('keeps a plan the operator edited, and refuses one for other hosts without --force', async () => {
    const { planFile } = await runInit(options());
    const edited = (await fsp.readFile(planFile, 'utf8'))
      .replace('ssh = "root@127.0.0.2"', 'ssh = "admin@127.0.0.2"')
      .replace('agent = "127.0.0.3:7826"', 'agent = "127.0.0.3:7900"');
    await fsp.writeFile(planFile, edited);

    const kept = await runInit(options());
    expect(kept.planWritten).toBe(false);
    expect(kept.lines[0]).toContain('kept plan');
    expect(await fsp.readFile(planFile, 'utf8')).toBe(edited);

    const err = await failure(runInit(options({ new: '127.0.0.4' })));
    expect(err.code).toBe('plan.exists');
    expect(err.message).toContain('new.host is "127.0.0.3", not "127.0.0.4"');
    expect(err.hint).toContain('--force');
    expect(await fsp.readFile(planFile, 'utf8')).toBe(edited);

    const replaced = await runInit(options({ new: '127.0.0.4', force: true }));
    expect(replaced.planWritten).toBe(true);
    expect((await loadPlan(planFile)).new.host).toBe('127.0.0.4');
    expect(validFor(await cert('new', 'agent.crt'), '127.0.0.4')).toBe(true);
  });

  it('refuses bad options by flag', async () => {
    const cases: Array<[Partial<InitOptions>, string]> = [
      [{ old: 'not a host' }, '--old'],
      [{ new: '' }, '--new'],
      [{ domain: 'bad domain' }, '--domain'],
      [{ oldAgent: '127.0.0.2:99999' }, '--old-agent'],
      [{ newAgent: '127.0.0.2:7826' }, '127.0.0.2:7826'],
    ];
    for (const [opts, named] of cases) {
      const err = await failure(runInit(options(opts)));
      expect(err.code).toBe('usage.bad_option');
      expect(err.message).toContain(named);
    }
    await expect(fsp.stat(options().plan)).rejects.toThrow();
  });
});

describe('ensurePki', () => {
  it('reissues only the agent whose hosts changed, from the same CA', async () => {
    const dirTls = path.join(dir, 'tls');
    const first = await ensurePki(dirTls, 'mail.example.org', { old: ['127.0.0.2'], new: ['127.0.0.3'] });
    expect(first).toMatchObject({ created: true, issued: ['controller', 'old', 'new'] });
    const ca = await fsp.readFile(path.join(dirTls, 'ca', 'ca.crt'));
    const oldCert = await fsp.readFile(path.join(dirTls, 'old', 'agent.crt'));

    const second = await ensurePki(dirTls, 'mail.example.org', { old: ['127.0.0.2', '127.0.0.2'], new: ['127.0.0.4', 'new.example.org'] });
    expect(second).toMatchObject({ created: false, caId: first.caId, issued: ['new'] });
    expect(second.sans.new).toEqual(['IP:127.0.0.4', 'DNS:new.example.org']);
    expect((await fsp.readFile(path.join(dirTls, 'ca', 'ca.crt'))).equals(ca)).toBe(true);
    expect((await fsp.readFile(path.join(dirTls, 'old', 'agent.crt'))).equals(oldCert)).toBe(true);
    const newCert = new crypto.X509Certificate(await fsp.readFile(path.join(dirTls, 'new', 'agent.crt')));
    expect(newCert.checkIssued(new crypto.X509Certificate(ca))).toBe(true);
    expect(validFor(newCert, '127.0.0.4') && validFor(newCert, 'new.example.org')).toBe(true);

    // A lost key is replaced; a CA for another domain is not silently reused.
    await fsp.rm(path.join(dirTls, 'controller', 'controller.key'));
    expect((await ensurePki(dirTls, 'mail.example.org', { old: ['127.0.0.2'], new: ['127.0.0.4', 'new.example.org'] })).issued).toEqual([
      'controller',
    ]);
    const err = await failure(ensurePki(dirTls, 'other.example.org', { old: ['127.0.0.2'], new: ['127.0.0.3'] }));
    expect(err.code).toBe('pki.exists');
    expect(err.hint).toContain('--force');
  });

  it('loadTls names a missing file', async () => {
    const err = await failure(loadTls(path.join(dir, 'nowhere'), 'controller'));
    expect(err.code).toBe('pki.missing');
    expect(err.message).toContain(path.join(dir, 'nowhere', 'ca.crt'));
    expect(err.hint).toContain('cmmigrate init');
  });
});

describe('mutual TLS with the issued material', () => {
  /** An agent-like server on 127.0.0.1 that records the role (OU) of each accepted peer. */
  async function agentServer(m: TlsMaterial) {
    const roles: string[] = [];
    const refused: Error[] = [];
    const server = tls.createServer({ key: m.key, cert: m.cert, ca: m.ca, requestCert: true, rejectUnauthorized: true });
    server.on('secureConnection', (s) => {
      roles.push(String(s.getPeerCertificate().subject.OU));
      s.end('ok');
    });
    server.on('tlsClientError', (err) => refused.push(err));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { server, roles, refused, port: (server.address() as AddressInfo).port };
  }

  /** Connects with `m`, checking the server's certificate against `name`; resolves to the server's reply or the error. */
  async function connect(port: number, m: Partial<TlsMaterial> & { ca: Buffer }, name: string): Promise<string | Error> {
    return new Promise((resolve) => {
      let data = '';
      const socket = tls.connect({
        host: '127.0.0.1',
        port,
        ca: m.ca,
        cert: m.cert,
        key: m.key,
        checkServerIdentity: (_host, peer) => tls.checkServerIdentity(name, peer),
      });
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => (data += d));
      socket.on('error', (err) => resolve(err));
      socket.on('close', () => resolve(data === 'ok' ? data : new Error(`closed without reply (${data})`)));
    });
  }

  it('lets the controller and the other agent in, each in its role, and refuses strangers', async () => {
    await runInit(options());
    const oldAgent = await loadTls(path.join(tlsDir(), 'old'), 'agent');
    const newAgent = await loadTls(path.join(tlsDir(), 'new'), 'agent');
    const controller = await loadTls(path.join(tlsDir(), 'controller'), 'controller');
    await runInit({ ...options(), plan: path.join(dir, 'other', 'plan.toml') });
    const stranger = await loadTls(path.join(dir, 'other', '.cmmigrate', 'tls', 'controller'), 'controller');

    const { server, roles, refused, port } = await agentServer(oldAgent);
    try {
      expect(await connect(port, controller, '127.0.0.2')).toBe('ok');
      expect(await connect(port, newAgent, '127.0.0.2')).toBe('ok');
      expect(roles).toEqual(['controller', 'agent']);

      // The client refuses a server whose certificate names another host.
      const wrongHost = await connect(port, controller, '127.0.0.3');
      expect(wrongHost).toBeInstanceOf(Error);
      expect((wrongHost as NodeJS.ErrnoException).code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');

      // The server refuses a client from another CA, and one without a certificate.
      expect(await connect(port, { ...stranger, ca: controller.ca }, '127.0.0.2')).toBeInstanceOf(Error);
      expect(await connect(port, { ca: controller.ca }, '127.0.0.2')).toBeInstanceOf(Error);
      expect(roles).toEqual(['controller', 'agent']);
      expect(refused.length).toBeGreaterThanOrEqual(2);
    } finally {
      server.close();
    }
  });
});

describe('runInit with a relay checkout (issue 5)', () => {
  async function checkout(ini: string): Promise<string> {
    const relay = path.join(dir, 'relay');
    await fsp.mkdir(relay, { recursive: true });
    await fsp.writeFile(path.join(relay, 'chatmail.ini'), ini);
    return relay;
  }

  it('reads mail_domain and mailboxes_dir from chatmail.ini and writes the run settings', async () => {
    const relay = await checkout('[params]\nmail_domain = mail.example.org\nmailboxes_dir = /srv/vmail/mail.example.org\n');
    await runInit({ plan: path.join(dir, 'move', 'plan.toml'), old: '127.0.0.2', new: '127.0.0.3', relayDir: relay, newIpv4: '198.51.100.7', newIpv6: '[2001:db8::7]', oldSsh: 'admin@127.0.0.2' });
    const plan = await loadPlan(path.join(dir, 'move', 'plan.toml'));
    expect(plan.mailDomain).toBe('mail.example.org');
    expect(plan.relayDir).toBe(relay);
    expect(plan.mailboxesDir).toBe('/srv/vmail');
    expect(plan.newAddresses).toEqual({ ipv4: ['198.51.100.7'], ipv6: ['2001:db8::7'] });
    expect(plan.old.ssh).toBe('admin@127.0.0.2');
    expect(plan.new.ssh).toBe('root@127.0.0.3');
  });

  it('refuses a --domain that disagrees with chatmail.ini, and a missing domain, writing nothing', async () => {
    const relay = await checkout('[params]\nmail_domain = other.example.org\n');
    const err = await failure(runInit(options({ relayDir: relay })));
    expect(err.code).toBe('usage.bad_option');
    expect(err.message).toContain('other.example.org');
    const none = await failure(runInit({ plan: path.join(dir, 'move', 'plan.toml'), old: '127.0.0.2', new: '127.0.0.3' }));
    expect(none.code).toBe('usage.missing_option');
    const bad = await failure(runInit(options({ newIpv4: '2001:db8::7' })));
    expect(bad.message).toContain('--new-ipv4');
    await expect(fsp.stat(path.join(dir, 'move', 'plan.toml'))).rejects.toThrow();
  });
});
