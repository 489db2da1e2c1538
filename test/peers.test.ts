/**
 * Peers the agents must refuse, beyond those of test/security.test.ts: certificates of the
 * migration's own CA that expired, the controller's certificate presented by a sending
 * agent or by an agent the controller calls, an agent's certificate used by the
 * controller's CLI. And load: 100 bogus connections (garbage bytes, TLS without a
 * certificate, half-open sockets) and slow-loris clients on both agents' ports while a pass
 * runs; the pass completes and verifies. Several refusals here may come from the hostname or
 * key-usage check before the role is looked at: test/roles.test.ts refuses by the role alone.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentClient, clientChannelOptions } from '../proto';
import { CraftedTar, listed, listing, MAILBOXES, startCraftedSender } from './support/crafted-sender';
import { expectIntact, reportFigure } from './support/fault-checks';
import { setupMigration, type Migration } from './support/harness';
import { days } from './support/test-certs';

x509.cryptoProvider.set(crypto.webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
const MIB = 1024 * 1024;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** A copy of the leaf in `leafDir` (same subject, SANs, usages), signed by the migration's CA, valid only between `from` and `to`. */
async function reissue(tlsDir: string, leafCrt: string, from: Date, to: Date): Promise<{ cert: string; key: string }> {
  const ca = new x509.X509Certificate(await fs.readFile(path.join(tlsDir, 'ca', 'ca.crt'), 'utf8'));
  const caKey = await crypto.webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(await fs.readFile(path.join(tlsDir, 'ca', 'ca.key'), 'utf8')), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  const tpl = new x509.X509Certificate(await fs.readFile(leafCrt, 'utf8'));
  const keys = await crypto.webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '1' + crypto.randomBytes(7).toString('hex'),
    subject: tpl.subject,
    issuer: ca.subject,
    notBefore: from,
    notAfter: to,
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGN,
    extensions: tpl.extensions,
  });
  const der = await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { cert: cert.toString('pem'), key: x509.PemConverter.encode(der, 'PRIVATE KEY') };
}

/** A TLS dir laid out as an agent's (ca.crt, agent.crt, agent.key) holding `cert`. */
async function agentDir(dir: string, ca: string, m: { cert: string | Buffer; key: string | Buffer }): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, 'ca.crt'), ca);
  await fs.writeFile(path.join(dir, 'agent.crt'), m.cert);
  await fs.writeFile(path.join(dir, 'agent.key'), m.key, { mode: 0o600 });
  return dir;
}

describe('peers of the right CA that must still be refused', () => {
  let m: Migration;
  /** Each refusal asserted below, counted where its assertion passed. */
  const refused: string[] = [];
  let tlsDir: string;
  let ca: string;
  beforeAll(async () => {
    m = await setupMigration({ tree: { addresses: 1, messagesPerAddress: 2 } });
    tlsDir = path.join(m.dir, '.cmmigrate', 'tls');
    ca = await fs.readFile(path.join(tlsDir, 'ca', 'ca.crt'), 'utf8');
  }, 60_000);
  afterAll(async () => {
    await m?.close();
    reportFigure('peers', { refused: refused.length, at: refused.join(' ') });
  });

  const infoError = (address: string, id: { cert: string | Buffer; key: string | Buffer }): Promise<grpc.ServiceError | null> => {
    const c = agentClient(address, grpc.credentials.createSsl(Buffer.from(ca), Buffer.from(id.key), Buffer.from(id.cert)), clientChannelOptions());
    return new Promise((resolve) => c.Info({}, { deadline: Date.now() + 5000 }, (err) => (c.close(), resolve(err))));
  };

  /** The new agent pulls from a crafted sender that presents `dir`'s certificate: it must refuse before asking anything. */
  async function pullFrom(dir: string): Promise<void> {
    const sender = await startCraftedSender('127.0.0.2', dir);
    try {
      const data = Buffer.from('rogue\n');
      sender.pass = { list: listing([listed(MAILBOXES, 'dir'), listed(`${MAILBOXES}/rogue`, 'file', { size: data.length })]), fetch: await new CraftedTar().file(`${MAILBOXES}/rogue`, data).end().bytes() };
      const plan = path.join(m.dir, 'rogue.toml');
      await fs.writeFile(plan, (await fs.readFile(m.plan, 'utf8')).replace(`"${m.oldAddress}"`, `"${sender.address}"`));
      const r = await m.cli(['sync', '--plan', plan, '--phase', 'initial'], 20_000);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain('[connect.unavailable]');
      expect(r.stderr).toContain(sender.address);
      expect(sender.lists).toEqual([]);
      expect(sender.fetches).toEqual([]);
      await expect(fs.stat(path.join(m.newRoot, MAILBOXES, 'rogue'))).rejects.toThrow(/ENOENT/);
      refused.push(`sender:${path.basename(dir)}`);
    } finally {
      await sender.stop();
    }
  }

  it('the real material works (the checks below can fail)', async () => {
    const ctl = { cert: await fs.readFile(path.join(tlsDir, 'controller', 'controller.crt')), key: await fs.readFile(path.join(tlsDir, 'controller', 'controller.key')) };
    expect(await infoError(m.newAddress, ctl)).toBeNull();
    const fresh = await reissue(tlsDir, path.join(tlsDir, 'controller', 'controller.crt'), days(-1), days(30));
    expect(await infoError(m.newAddress, fresh)).toBeNull();
  });

  it('refuses the controller with an expired certificate of the migration CA', async () => {
    const expired = await reissue(tlsDir, path.join(tlsDir, 'controller', 'controller.crt'), days(-30), days(-1));
    for (const a of [m.newAddress, m.oldAddress]) {
      expect([grpc.status.UNAVAILABLE, grpc.status.UNAUTHENTICATED]).toContain((await infoError(a, expired))?.code);
      refused.push(`expired:${a === m.newAddress ? 'new' : 'old'}`);
    }
  });

  it('refuses the controller with a certificate not valid yet', async () => {
    const future = await reissue(tlsDir, path.join(tlsDir, 'controller', 'controller.crt'), days(2), days(30));
    expect([grpc.status.UNAVAILABLE, grpc.status.UNAUTHENTICATED]).toContain((await infoError(m.newAddress, future))?.code);
    refused.push('not-yet-valid');
  });

  it('the new agent refuses a sending agent with an expired certificate of the migration CA', async () => {
    await pullFrom(await agentDir(path.join(m.dir, 'expired-old'), ca, await reissue(tlsDir, path.join(tlsDir, 'old', 'agent.crt'), days(-30), days(-1))));
  });

  it('the new agent refuses a sending agent that presents the controller\'s certificate', async () => {
    const ctl = { cert: await fs.readFile(path.join(tlsDir, 'controller', 'controller.crt')), key: await fs.readFile(path.join(tlsDir, 'controller', 'controller.key')) };
    await pullFrom(await agentDir(path.join(m.dir, 'ctl-as-old'), ca, ctl));
  });

  it('the controller refuses an agent that presents the controller\'s certificate, and uses no agent certificate of its own', async () => {
    const ctlDir = path.join(tlsDir, 'controller');
    const saved = { cert: await fs.readFile(path.join(ctlDir, 'controller.crt')), key: await fs.readFile(path.join(ctlDir, 'controller.key')) };
    // A server on the new agent's address with the controller's certificate.
    const fake = await startCraftedSender('127.0.0.3', await agentDir(path.join(m.dir, 'ctl-as-new'), ca, saved));
    try {
      const plan = path.join(m.dir, 'fake-new.toml');
      await fs.writeFile(plan, (await fs.readFile(m.plan, 'utf8')).replace(`"${m.newAddress}"`, `"${fake.address}"`));
      const r = await m.cli(['sync', '--plan', plan, '--phase', 'initial'], 20_000);
      expect(r.code, r.stderr).not.toBe(0);
      expect(r.stderr).toMatch(/not an agent's|\[connect\.unavailable\]/);
      refused.push('controller-cert-as-new-agent');
    } finally {
      await fake.stop();
    }
    // The controller's CLI holding the new agent's certificate instead of its own.
    await fs.copyFile(path.join(tlsDir, 'new', 'agent.crt'), path.join(ctlDir, 'controller.crt'));
    await fs.copyFile(path.join(tlsDir, 'new', 'agent.key'), path.join(ctlDir, 'controller.key'));
    try {
      const r = await m.cli(['sync', '--plan', m.plan, '--phase', 'initial'], 20_000);
      expect(r.code, r.stderr).not.toBe(0);
      expect(r.stderr).toMatch(/\[(auth\.wrong_role|auth\.refused|connect\.unavailable|pki\.[a-z_]+|tls\.[a-z_]+)\]/);
      await expect(fs.stat(path.join(m.newRoot, MAILBOXES))).rejects.toThrow(/ENOENT/);
      refused.push('agent-cert-as-controller');
    } finally {
      await fs.writeFile(path.join(ctlDir, 'controller.crt'), saved.cert);
      await fs.writeFile(path.join(ctlDir, 'controller.key'), saved.key, { mode: 0o600 });
    }
  });
});

describe('load on the agents\' ports during a pass', () => {
  let m: Migration;
  const sockets: net.Socket[] = [];
  beforeAll(async () => {
    m = await setupMigration({ tree: { addresses: 4, messagesPerAddress: 10, bigFiles: [16 * MIB, 16 * MIB, 16 * MIB] } });
  }, 60_000);
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await m?.close();
  });

  it('100 bogus connections and slow-loris clients do not stop a pass, which completes and verifies', async () => {
    const targets = [m.oldAddress, m.newAddress].map((a) => ({ host: a.split(':')[0], port: Number(a.split(':')[1]) }));
    let opened = 0;
    const kinds = { garbage: 0, tlsNoCert: 0, halfOpen: 0, slowLoris: 0 };
    const timers: NodeJS.Timeout[] = [];
    const bogus = (i: number): void => {
      const t = targets[i % 2];
      const kind = (['garbage', 'tlsNoCert', 'halfOpen', 'slowLoris'] as const)[i % 4];
      kinds[kind]++;
      if (kind === 'tlsNoCert') {
        const s = tls.connect({ host: t.host, port: t.port, rejectUnauthorized: false, ALPNProtocols: ['h2'] });
        s.on('error', () => undefined);
        s.on('secureConnect', () => s.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')));
        sockets.push(s);
      } else {
        const s = net.connect(t);
        s.on('error', () => undefined);
        sockets.push(s);
        if (kind === 'garbage') s.on('connect', () => s.write(crypto.randomBytes(4096)));
        if (kind === 'halfOpen') s.on('connect', () => s.end());
        if (kind === 'slowLoris') {
          // A TLS record header, then one byte every 100 ms.
          const hello = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00]), crypto.randomBytes(1000)]);
          let k = 0;
          timers.push(setInterval(() => !s.destroyed && k < hello.length && s.write(hello.subarray(k, ++k)), 100));
        }
      }
      opened++;
    };
    for (let i = 0; i < 100; i++) bogus(i);
    const run = m.cli(['sync', '--plan', m.plan, '--phase', 'initial', '--json'], 60_000);
    // More while the pass runs.
    for (let i = 100; i < 140; i++) {
      await new Promise((r) => setTimeout(r, 10));
      bogus(i);
    }
    const r = await run;
    timers.forEach(clearInterval);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).bytes).toBeGreaterThan(48 * MIB);
    const fin = await m.cli(['sync', '--plan', m.plan, '--phase', 'final'], 60_000);
    expect(fin.code, fin.stderr).toBe(0);
    await expectIntact(m);
    for (const a of [m.old, m.new]) expect(a.child.exitCode).toBeNull();
    reportFigure('load', { connections: opened, ...kinds, result: 'pass completed and verified' });
  }, 90_000);
});
