/**
 * Roles (issue 15, point 1): a peer whose certificate is of this migration's CA and passes
 * every other check (the SAN of the address it serves or calls from, digitalSignature,
 * serverAuth and clientAuth) but carries the wrong role in its OU is refused by the role
 * check itself, on the server side (the agent's per-call check, `auth.wrong_role`) and on
 * the client side (the receiving agent's and the controller's check of the server they
 * call). Each refusal has a twin that differs only in the OU and gets through, so the
 * refusal cannot come from an earlier check.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentClient, clientChannelOptions, type AgentClient } from '../proto';
import { CraftedTar, listed, listing, MAILBOXES, startCraftedSender, type CraftedSender } from './support/crafted-sender';
import { reportFigure } from './support/fault-checks';
import { setupMigration, type Migration } from './support/harness';
import { issueRoleCertificate, writeAgentDir, type RoleCertificate } from './support/role-certs';

const BOTH = ['serverAuth', 'clientAuth'] as Array<'serverAuth' | 'clientAuth'>;
const cmmCode = (err: grpc.ServiceError | null | undefined): unknown => err?.metadata?.get('cmm-code')?.[0];

describe('a certificate of the migration CA in the wrong role is refused by the role check', () => {
  let m: Migration;
  let tlsDir: string;
  let ca: Buffer;
  const clients: AgentClient[] = [];
  const refused: string[] = [];

  beforeAll(async () => {
    m = await setupMigration({ tree: { addresses: 1, messagesPerAddress: 2 } });
    tlsDir = path.join(m.dir, '.cmmigrate', 'tls');
    ca = await fs.readFile(path.join(tlsDir, 'ca', 'ca.crt'));
  }, 60_000);
  afterAll(async () => {
    for (const c of clients) c.close();
    await m?.close();
    reportFigure('roles', { refused: refused.length, at: refused.join(' ') });
  });

  /** An agent-shaped or controller-shaped leaf that differs from the real one only as `ou` says. */
  const leaf = (ou: string, ip: string): Promise<RoleCertificate> => issueRoleCertificate(tlsDir, { ou, cn: `cmmigrate ${ou} role test`, ips: [ip], eku: BOTH });
  const client = (address: string, id: RoleCertificate): AgentClient => {
    const c = agentClient(address, grpc.credentials.createSsl(ca, Buffer.from(id.key), Buffer.from(id.cert)), clientChannelOptions());
    clients.push(c);
    return c;
  };
  const deadline = (): grpc.CallOptions => ({ deadline: Date.now() + 10_000 });
  const info = (c: AgentClient): Promise<grpc.ServiceError | null> => new Promise((resolve) => c.Info({}, deadline(), (err) => resolve(err)));
  async function drain(s: AsyncIterable<unknown>): Promise<{ messages: number; err: grpc.ServiceError | null }> {
    let messages = 0;
    try {
      for await (const _ of s) messages++;
      return { messages, err: null };
    } catch (err) {
      return { messages, err: err as grpc.ServiceError };
    }
  }
  const scope = { roots: ['mailboxes'], mailboxes_dir: '/home/vmail/mail' };

  it('server side: List from a controller-role certificate of the new agent\'s shape gets auth.wrong_role; the agent-role twin lists', async () => {
    const twin = await drain(client(m.oldAddress, await leaf('agent', '127.0.0.3')).List({ phase: 'INITIAL', scope }, deadline()));
    expect(twin.err).toBeNull();
    expect(twin.messages).toBeGreaterThan(0);
    const wrong = await drain(client(m.oldAddress, await leaf('controller', '127.0.0.3')).List({ phase: 'INITIAL', scope }, deadline()));
    expect(wrong.messages).toBe(0);
    expect(wrong.err?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(cmmCode(wrong.err)).toBe('auth.wrong_role');
    expect(wrong.err?.details).toContain('List needs a agent certificate of this migration; the caller presented a controller certificate');
    refused.push('server:List');
  });

  it('server side: Info and Pull from an agent-role certificate of the controller\'s shape get auth.wrong_role; the controller-role twin is answered', async () => {
    expect(await info(client(m.newAddress, await leaf('controller', '127.0.0.1')))).toBeNull();
    const c = client(m.newAddress, await leaf('agent', '127.0.0.1'));
    const err = await info(c);
    expect(err?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(cmmCode(err)).toBe('auth.wrong_role');
    refused.push('server:Info');
    const pull = await drain(c.Pull({ source: m.oldAddress, phase: 'INITIAL', scope, owners: [], max_delete: -1 }, deadline()));
    expect(pull.messages).toBe(0);
    expect(cmmCode(pull.err)).toBe('auth.wrong_role');
    await expect(fs.stat(path.join(m.newRoot, MAILBOXES))).rejects.toThrow(/ENOENT/);
    refused.push('server:Pull');
  });

  /** A plan whose `side` agent is `address`. */
  async function planWith(side: 'old' | 'new', address: string): Promise<string> {
    const plan = path.join(m.dir, `roles-${side}-${address.replace(/[:.]/g, '_')}.toml`);
    await fs.writeFile(plan, (await fs.readFile(m.plan, 'utf8')).replace(`"${side === 'old' ? m.oldAddress : m.newAddress}"`, `"${address}"`));
    return plan;
  }

  async function crafted(ou: string, ip: string): Promise<CraftedSender> {
    const sender = await startCraftedSender(ip, await writeAgentDir(path.join(m.dir, `sender-${ou}-${ip}`), tlsDir, await leaf(ou, ip)));
    const data = Buffer.from('rogue\n');
    sender.pass = {
      list: listing([listed(MAILBOXES, 'dir'), listed(`${MAILBOXES}/rogue`, 'file', { size: data.length })]),
      fetch: await new CraftedTar().file(`${MAILBOXES}/rogue`, data).end().bytes(),
    };
    return sender;
  }

  it('client side, receiving agent: a sender with a controller-role certificate of the old agent\'s shape is refused before List; the agent-role twin is asked', async () => {
    const twin = await crafted('agent', '127.0.0.2');
    try {
      await m.cli(['sync', '--plan', await planWith('old', twin.address), '--phase', 'initial'], 30_000);
      expect(twin.lists.length).toBeGreaterThan(0);
    } finally {
      await twin.stop();
    }
    await fs.rm(path.join(m.newRoot, MAILBOXES), { recursive: true, force: true });
    const wrong = await crafted('controller', '127.0.0.2');
    try {
      const r = await m.cli(['sync', '--plan', await planWith('old', wrong.address), '--phase', 'initial'], 30_000);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain('[connect.unavailable]');
      expect(r.stderr).toContain(`presented a certificate of role controller, not an agent's`);
      expect(wrong.lists).toEqual([]);
      expect(wrong.fetches).toEqual([]);
      await expect(fs.stat(path.join(m.newRoot, MAILBOXES, 'rogue'))).rejects.toThrow(/ENOENT/);
      refused.push('client:agent');
    } finally {
      await wrong.stop();
    }
  }, 90_000);

  it('client side, controller: an agent address served with a controller-role certificate of the new agent\'s shape is refused; the agent-role twin is called', async () => {
    const twin = await crafted('agent', '127.0.0.3');
    try {
      const r = await m.cli(['agents', '--plan', await planWith('new', twin.address)], 30_000);
      // The crafted server answers only List and Fetch: Info reaches it and is unimplemented.
      expect(r.stdout + r.stderr).toContain('does not implement the method Info');
      expect(r.stdout + r.stderr).not.toContain('not an agent\'s');
    } finally {
      await twin.stop();
    }
    const wrong = await crafted('controller', '127.0.0.3');
    try {
      const r = await m.cli(['agents', '--plan', await planWith('new', wrong.address)], 30_000);
      expect(r.code).not.toBe(0);
      // No code of its own on this side: the transport's, with the role check's message.
      expect(r.stderr).toContain('[agents.unreachable]');
      expect(r.stdout + r.stderr).toContain(`the new agent at ${wrong.address} presented a certificate that is not an agent's`);
      refused.push('client:controller');
    } finally {
      await wrong.stop();
    }
  }, 90_000);
});
