/**
 * Host operations through the agent (issue 5, item 4): two real agent processes on
 * loopback with real TLS, the stand-in systemctl, postfix and postsuper first on their
 * PATH (test/support/host-tools), driven through the controller's hostOps wrapper and, for
 * the refusals, raw grpc-js clients. Effects are checked in the stand-ins' state files and
 * call logs.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentClient, ALLOWED_UNITS, clientChannelOptions, type AgentClient, type HostOpReply__Output, type HostOpRequest } from '../proto';
import { HostOpRunner } from '../agent/host/host-ops';
import { connectAgent, type AgentHandle } from '../controller/agent-client';
import { hostOps, MAIL_UNITS, MAILBOX_WRITERS, type HostOps } from '../controller/host-ops';
import { loadTls } from '../controller/tls-material';
import { loadPlan, type Plan } from '../controller/plan';
import { failure } from './support/expect-error';
import { ALL_ROOT_PATHS, freePort, setupMigration, startAgentProcess, type AgentProcess, type Migration } from './support/harness';
import { clearFailure, hostToolsEnv, injectFailure, readCalls, setUnitState, unitState } from './support/host-tools';

const TEST_TIMEOUT = 30_000;

describe('host operations through the agent', { timeout: TEST_TIMEOUT }, () => {
  let m: Migration;
  let stateDirs: string;
  let oldState: string;
  let newState: string;
  let plan: Plan;
  const handles: AgentHandle[] = [];
  const clients: AgentClient[] = [];
  let oldOps: HostOps;
  let newOps: HostOps;

  beforeAll(async () => {
    stateDirs = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-hostops-'));
    oldState = path.join(stateDirs, 'old');
    newState = path.join(stateDirs, 'new');
    await Promise.all([fs.mkdir(oldState), fs.mkdir(newState)]);
    m = await setupMigration({ tree: { addresses: 1, messagesPerAddress: 1 }, agentEnv: { old: hostToolsEnv(oldState), new: hostToolsEnv(newState) } });
    plan = await loadPlan(m.plan);
    for (const side of ['old', 'new'] as const) handles.push(await connectAgent(plan, side));
    oldOps = hostOps(handles[0]);
    newOps = hostOps(handles[1]);
  }, 60_000);
  afterAll(async () => {
    for (const h of handles) h.client.close();
    for (const c of clients) c.close();
    await m?.close();
    if (stateDirs) await fs.rm(stateDirs, { recursive: true, force: true });
  });

  /** A raw client of `address` presenting the TLS material of `leaf`. */
  async function rawClient(address: string, leaf: 'controller' | 'old' | 'new'): Promise<AgentClient> {
    const t = await loadTls(path.join(plan.tlsDir, leaf), leaf === 'controller' ? 'controller' : 'agent');
    const c = agentClient(address, grpc.credentials.createSsl(t.ca, t.key, t.cert), clientChannelOptions());
    clients.push(c);
    return c;
  }

  function rawHostOp(c: AgentClient, req: HostOpRequest): Promise<{ err: grpc.ServiceError | null; reply?: HostOpReply__Output }> {
    return new Promise((resolve) => c.HostOp(req, { deadline: Date.now() + 10_000 }, (err, reply) => resolve({ err, reply })));
  }
  const cmmCode = (err: grpc.ServiceError | null): unknown => err?.metadata?.get('cmm-code')?.[0];

  it('reports unit states as systemctl is-active prints them, inactive and failed included', async () => {
    await setUnitState(oldState, 'postfix', 'active');
    await setUnitState(oldState, 'dovecot', 'failed');
    const before = (await readCalls(oldState)).length;
    const states = await oldOps.serviceStates(['postfix', 'dovecot', 'opendkim']);
    expect(states).toEqual({ postfix: 'active', dovecot: 'failed', opendkim: 'inactive' });
    expect((await readCalls(oldState)).slice(before)).toEqual(['systemctl is-active postfix dovecot opendkim']);
  });

  it('stop changes the units\' state on the host and reports the states after', async () => {
    for (const u of MAIL_UNITS) await setUnitState(newState, u, 'active');
    const before = (await readCalls(newState)).length;
    const after = await newOps.stopServices([...MAIL_UNITS]);
    expect(after).toEqual({ postfix: 'inactive', dovecot: 'inactive', opendkim: 'inactive' });
    for (const u of MAIL_UNITS) expect(await unitState(newState, u)).toBe('inactive');
    expect((await readCalls(newState)).slice(before)).toEqual(['systemctl stop postfix dovecot opendkim', 'systemctl is-active postfix dovecot opendkim']);
    expect(await newOps.serviceStates([...MAIL_UNITS])).toEqual(after);
    const logged = m.new
      .log()
      .split('\n')
      .filter((l) => l.includes('"op":"service.stop"'))
      .map((l) => JSON.parse(l));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ msg: 'host operation', units: [...MAIL_UNITS], exit_code: 0 });
    expect(typeof logged[0].ms).toBe('number');
    // the old host was not touched
    expect(await unitState(oldState, 'postfix')).toBe('active');
  });

  it('start and restart run on the host and report the states after', async () => {
    const before = (await readCalls(oldState)).length;
    const started = await oldOps.startServices([...MAILBOX_WRITERS]);
    expect(started).toEqual(Object.fromEntries(MAILBOX_WRITERS.map((u) => [u, 'active'])));
    for (const u of MAILBOX_WRITERS) expect(await unitState(oldState, u)).toBe('active');
    expect(await oldOps.restartServices(['nginx'])).toEqual({ nginx: 'active' });
    expect(await unitState(oldState, 'nginx')).toBe('active');
    expect((await readCalls(oldState)).slice(before)).toEqual([
      `systemctl start ${MAILBOX_WRITERS.join(' ')}`,
      `systemctl is-active ${MAILBOX_WRITERS.join(' ')}`,
      'systemctl restart nginx',
      'systemctl is-active nginx',
    ]);
  });

  it('runs postfix set-permissions and postsuper -s', async () => {
    const before = (await readCalls(newState)).length;
    expect(await newOps.postfixSetPermissions()).toBe('');
    expect(await newOps.postsuperRequeue()).toBe('');
    expect((await readCalls(newState)).slice(before)).toEqual(['postfix set-permissions', 'postsuper -s']);
  });

  it('reads /etc/chatmail-version under --root, and an absent one is no error', async () => {
    const version = 'b5d6c2e0f1a7 chatmail-relay-1.9.0-VERSION-MARKER\n';
    await fs.writeFile(path.join(m.oldRoot, 'etc/chatmail-version'), version);
    expect(await oldOps.chatmailVersion()).toBe(version);
    await fs.rm(path.join(m.newRoot, 'etc/chatmail-version'), { force: true });
    expect(await newOps.chatmailVersion()).toBeUndefined();
    // logged as an operation, its content never
    expect(m.old.log()).toContain('"op":"chatmail_version.read"');
    expect(m.old.log()).not.toContain('VERSION-MARKER');
  });

  it('caps /etc/chatmail-version at 64 KiB and does not read it through a symlink', async () => {
    const file = path.join(m.newRoot, 'etc/chatmail-version');
    await fs.writeFile(file, 'v'.repeat(100 * 1024));
    expect(await newOps.chatmailVersion()).toBe('v'.repeat(64 * 1024));
    await fs.rm(file);
    const outside = path.join(m.dir, 'outside-secret');
    await fs.writeFile(outside, 'not for the controller\n');
    await fs.symlink(outside, file);
    try {
      const e = await failure(newOps.chatmailVersion());
      expect(e.code).toBe('host.bad_file');
      expect(e.message).toContain('symlink');
    } finally {
      await fs.rm(file);
    }
  });

  it('reports free and total bytes of the mailboxes dir\'s filesystem, or of its nearest existing ancestor', async () => {
    const fsOf = await fs.statfs(m.dir);
    const old = await oldOps.freeDisk();
    expect(old.path).toBe('/home/vmail/mail');
    expect(old.freeBytes).toBeGreaterThan(0);
    expect(old.freeBytes).toBeLessThanOrEqual(old.totalBytes);
    expect(old.totalBytes).toBe(fsOf.blocks * fsOf.bsize);
    // the new root has no mailboxes dir yet: its nearest existing ancestor is examined
    await fs.rm(path.join(m.newRoot, 'home'), { recursive: true, force: true });
    const fresh = await newOps.freeDisk();
    expect(fresh.path).toBe('/');
    expect(fresh.freeBytes).toBeGreaterThan(0);
    expect(fresh.totalBytes).toBe(old.totalBytes);
  });

  it('sizes the tree of every root, each hard-linked file once (issue 5: the disk check)', async () => {
    const seen = new Set<number>();
    let bytes = 0;
    let files = 0;
    const walk = async (p: string): Promise<void> => {
      const st = await fs.lstat(p).catch(() => undefined);
      if (!st) return;
      if (st.isDirectory()) for (const n of await fs.readdir(p)) await walk(path.join(p, n));
      else if (st.isFile() && !seen.has(st.ino)) {
        seen.add(st.ino);
        bytes += st.size;
        files += 1;
      }
    };
    for (const r of ALL_ROOT_PATHS) await walk(path.join(m.oldRoot, r));
    expect(files).toBeGreaterThan(5);
    expect(await oldOps.treeSize()).toEqual({ bytes, files });
  });

  it('a failing stop is host.command_failed naming the host, the command and its output, and leaves the unit', async () => {
    await setUnitState(oldState, 'postfix', 'active');
    await setUnitState(oldState, 'dovecot', 'active');
    await injectFailure(oldState, 'dovecot');
    try {
      const e = await failure(oldOps.stopServices(['postfix', 'dovecot']));
      expect(e.code).toBe('host.command_failed');
      expect(e.message).toContain('`systemctl stop postfix dovecot`');
      expect(e.message).toContain(os.hostname());
      expect(e.message).toContain('Job for dovecot.service failed');
      expect(e.hint).toContain('systemctl stop postfix dovecot');
      expect(await unitState(oldState, 'dovecot')).toBe('active');
      expect(await oldOps.serviceStates(['postfix', 'dovecot'])).toEqual({ postfix: 'inactive', dovecot: 'active' });
    } finally {
      await clearFailure(oldState, 'dovecot');
    }
  });

  it('a failing postsuper or postfix is host.command_failed naming the command', async () => {
    await injectFailure(newState, 'postsuper');
    await injectFailure(newState, 'postfix');
    try {
      const e = await failure(newOps.postsuperRequeue());
      expect(e.code).toBe('host.command_failed');
      expect(e.message).toContain('`postsuper -s` exited with 1');
      expect(e.message).toContain('Permission denied (stand-in failure)');
      const p = await failure(newOps.postfixSetPermissions());
      expect(p.code).toBe('host.command_failed');
      expect(p.message).toContain('`postfix set-permissions`');
    } finally {
      await clearFailure(newState, 'postsuper');
      await clearFailure(newState, 'postfix');
    }
    expect(await newOps.postsuperRequeue()).toBe('');
  });

  describe('refusals: nothing outside the allowlist runs', () => {
    const refusals: [string, HostOpRequest, grpc.status, string][] = [
      ['a unit outside the allowlist', { op: 'service.stop', units: ['postfix', 'sshd'] }, grpc.status.INVALID_ARGUMENT, 'agent.unit_not_allowed'],
      ['a unit with a suffix the allowlist does not name (issue 12 added the full .service names)', { op: 'service.stop', units: ['postfix.socket'] }, grpc.status.INVALID_ARGUMENT, 'agent.unit_not_allowed'],
      ['an option as a unit', { op: 'service.stop', units: ['--all'] }, grpc.status.INVALID_ARGUMENT, 'agent.unit_not_allowed'],
      ['an unknown op', { op: 'shell.exec', units: [] }, grpc.status.INVALID_ARGUMENT, 'agent.op_not_allowed'],
      ['a command as op', { op: 'systemctl', units: ['postfix'] }, grpc.status.INVALID_ARGUMENT, 'agent.op_not_allowed'],
      ['too many units', { op: 'service.is_active', units: [...ALLOWED_UNITS, ...ALLOWED_UNITS] }, grpc.status.INVALID_ARGUMENT, 'usage.bad_request'],
      ['a service op without units', { op: 'service.restart', units: [] }, grpc.status.INVALID_ARGUMENT, 'usage.bad_request'],
      ['units for an op that takes none', { op: 'postsuper.requeue', units: ['postfix'] }, grpc.status.INVALID_ARGUMENT, 'usage.bad_request'],
    ];
    for (const [what, req, status, code] of refusals) {
      it(`refuses ${what}`, async () => {
        const c = await rawClient(m.oldAddress, 'controller');
        const before = await readCalls(oldState);
        const { err } = await rawHostOp(c, req);
        expect(err?.code, err?.details).toBe(status);
        expect(cmmCode(err)).toBe(code);
        expect(await readCalls(oldState)).toEqual(before);
      });
    }

    it('names the refused unit, through the controller\'s wrapper too', async () => {
      const before = await readCalls(newState);
      const e = await failure(newOps.stopServices(['postfix', 'ssh']));
      expect(e.code).toBe('agent.unit_not_allowed');
      expect(e.message).toContain('"ssh"');
      expect(await readCalls(newState)).toEqual(before);
    });

    it('refuses HostOp from an agent-role certificate', async () => {
      const c = await rawClient(m.newAddress, 'old');
      const before = await readCalls(newState);
      const { err } = await rawHostOp(c, { op: 'service.stop', units: ['postfix'] });
      expect(err?.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(cmmCode(err)).toBe('auth.wrong_role');
      expect(await readCalls(newState)).toEqual(before);
    });
  });

  describe('an agent whose PATH lacks the host tools', () => {
    let bare: AgentProcess;
    let ops: HostOps;
    let handle: AgentHandle;
    beforeAll(async () => {
      const emptyBin = path.join(stateDirs, 'empty-bin');
      await fs.mkdir(emptyBin);
      const address = `127.0.0.3:${await freePort('127.0.0.3')}`;
      bare = await startAgentProcess({ listen: address, root: m.newRoot, tlsDir: path.join(plan.tlsDir, 'new'), env: { PATH: emptyBin, CMMIGRATE_HOST_STATE: newState } });
      handle = await connectAgent({ ...plan, new: { ...plan.new, agent: address } }, 'new');
      ops = hostOps(handle);
    }, 30_000);
    afterAll(async () => {
      handle?.client.close();
      await bare?.stop();
    });

    it('gives host.command_missing naming the binary', async () => {
      const before = await readCalls(newState);
      const e = await failure(ops.serviceStates(['postfix']));
      expect(e.code).toBe('host.command_missing');
      expect(e.message).toContain('systemctl is not on the agent\'s PATH');
      const p = await failure(ops.postsuperRequeue());
      expect(p.code).toBe('host.command_missing');
      expect(p.message).toContain('postsuper');
      expect(await readCalls(newState)).toEqual(before);
      // operations that run no command still work
      expect((await ops.freeDisk()).totalBytes).toBeGreaterThan(0);
    });
  });
});

describe('host commands that hang', () => {
  it('are stopped at the timeout with host.command_timeout, and the answer does not wait for them', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-hostops-hang-'));
    try {
      const bin = path.join(dir, 'bin');
      await fs.mkdir(bin);
      // A postsuper that never finishes; `exec` so the timeout's signal reaches the sleep.
      await fs.writeFile(path.join(bin, 'postsuper'), '#!/bin/sh\necho requeueing\nexec sleep 60\n', { mode: 0o755 });
      const ops = new HostOpRunner({
        roots: { root: dir, mailboxesDir: '/home/vmail/mail' },
        log: pino({ level: 'silent' }),
        timeoutMs: 500,
        env: { PATH: `${bin}:/usr/bin:/bin` },
      });
      const started = Date.now();
      const e = await failure(ops.run('postsuper.requeue', []));
      expect(e.code).toBe('host.command_timeout');
      expect(e.message).toContain('`postsuper -s` did not finish');
      expect(e.message).toContain('requeueing');
      expect(Date.now() - started).toBeLessThan(10_000);
      // A child of the command that outlives it and keeps its output pipe open must not
      // hold the answer back either.
      await fs.writeFile(path.join(bin, 'postsuper'), '#!/bin/sh\nsleep 60 &\necho requeued\n', { mode: 0o755 });
      const t0 = Date.now();
      expect(await ops.run('postsuper.requeue', [])).toEqual({ output: 'requeued\n' });
      expect(Date.now() - t0).toBeLessThan(30_000);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
