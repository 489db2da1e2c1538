/**
 * A lost journal is a full walk, named as such (issue 25): the helper killed between
 * passes, the helper stopped while more happens than the kernel's queue holds (a real
 * overflow), an agent restarted, a root bind-mounted over. Each next pass walks that root
 * in full, says why in its summary, and leaves the new host identical to the old; the pass
 * after it uses the journal again. And a foreign write on the new host while a pass runs
 * is not taken for the agent's own.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cmmigrate, freePort, startAgentProcess, type AgentProcess, type CliResult } from './support/harness';
import { generateRelayTree, writeIdentity } from './support/relay-tree';
import { diffSnapshots, snapshotTree } from './support/tree-snapshot';

const ROOTS = ['/home/vmail/mail', '/etc/dkimkeys', '/var/lib/acme', '/var/spool/postfix'];
const MAIL = 'home/vmail/mail/mail.example.org';

interface Walk {
  root: string;
  scoped: boolean;
  paths: number;
  reason: string;
}

describe('a lost journal is a full walk', () => {
  let dir: string;
  let plan: string;
  let oldRoot: string;
  let newRoot: string;
  let tls: string;
  let oldListen: string;
  const agents: { old?: AgentProcess; new?: AgentProcess } = {};

  const startOld = async (): Promise<void> => {
    agents.old = await startAgentProcess({ listen: oldListen, root: oldRoot, tlsDir: path.join(tls, 'old') });
  };
  const sync = async (): Promise<{ walks: Walk[]; files: number }> => {
    const r: CliResult = await cmmigrate(['sync', '--plan', plan, '--phase', 'final', '--json'], { cwd: dir, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split('\n').pop()!);
  };
  const mailWalk = (s: { walks: Walk[] }): Walk => s.walks.find((w) => w.root === 'mailboxes')!;
  const identical = async (): Promise<void> => {
    const [o, n] = await Promise.all([snapshotTree(oldRoot, ROOTS, { skipSockets: true }), snapshotTree(newRoot, ROOTS, { skipSockets: true })]);
    expect(diffSnapshots(o, n, { ignoreOwners: true })).toEqual([]);
  };
  /** The fanotify helper that an agent runs. */
  const helperOf = (a: AgentProcess): number => Number(execFileSync('pgrep', ['-P', String(a.child.pid), 'python3'], { encoding: 'utf8' }).trim().split('\n')[0]);
  const someMessage = (): string => {
    const box = fs.readdirSync(path.join(oldRoot, MAIL))[0];
    return path.join(oldRoot, MAIL, box, 'cur', fs.readdirSync(path.join(oldRoot, MAIL, box, 'cur'))[0]);
  };

  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-jfault-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512m', 'tmpfs', dir]);
    oldRoot = path.join(dir, 'old');
    newRoot = path.join(dir, 'new');
    await generateRelayTree({ root: oldRoot, seed: 5, addresses: 4, messagesPerAddress: 10, uidBase: 5000 });
    await writeIdentity(newRoot, 7000);
    const [po, pn] = [await freePort('127.0.0.2'), await freePort('127.0.0.3')];
    oldListen = `127.0.0.2:${po}`;
    plan = path.join(dir, 'plan.toml');
    const init = await cmmigrate(['init', '--plan', plan, '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3', '--old-agent', oldListen, '--new-agent', `127.0.0.3:${pn}`]);
    expect(init.code, init.stderr).toBe(0);
    tls = path.join(dir, '.cmmigrate', 'tls');
    await startOld();
    agents.new = await startAgentProcess({ listen: `127.0.0.3:${pn}`, root: newRoot, tlsDir: path.join(tls, 'new') });
    // The first pass makes the roots on the new host; from the second on the journals serve.
    await sync();
    await sync();
    expect(mailWalk(await sync())).toMatchObject({ scoped: true });
  }, 120_000);

  afterAll(async () => {
    await Promise.all([agents.old?.stop(), agents.new?.stop()]);
    execFileSync('umount', ['-l', dir]);
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('the helper killed between passes: the next pass walks in full and says so', async () => {
    process.kill(helperOf(agents.old!), 'SIGKILL');
    fs.appendFileSync(someMessage(), 'changed while the journal was down\n');
    const s = await sync();
    expect(mailWalk(s)).toMatchObject({ scoped: false, reason: expect.stringMatching(/journal: .*helper|agent restarted|began anew/) });
    await identical();
    expect(mailWalk(await sync())).toMatchObject({ scoped: true });
  });

  it('the helper stopped while more happens than the kernel queues: an overflow, a full walk', async () => {
    const helper = helperOf(agents.old!);
    // Outside the roots but on their filesystem: the kernel queues every event of a watched
    // filesystem before the helper looks at where it happened.
    const flood = path.join(dir, 'flood');
    fs.mkdirSync(flood, { recursive: true });
    const queued = Number(fs.readFileSync('/proc/sys/fs/fanotify/max_queued_events', 'utf8'));
    process.kill(helper, 'SIGSTOP');
    try {
      // Each file is at least a CREATE and a CLOSE_WRITE: twice the queue, and some.
      await new Promise<void>((resolve, reject) => {
        const p = spawn('python3', ['-c', `import os\nfor i in range(${queued + 2000}):\n  open(os.path.join(${JSON.stringify(flood)}, 'flood%d' % i), 'w').write('x')`], { stdio: 'inherit' });
        p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`flood exited ${code}`))));
      });
    } finally {
      process.kill(helper, 'SIGCONT');
    }
    fs.rmSync(flood, { recursive: true });
    const s = await sync();
    expect(mailWalk(s)).toMatchObject({ scoped: false, reason: expect.stringContaining('overflow') });
    await identical();
    expect(mailWalk(await sync())).toMatchObject({ scoped: true });
  }, 120_000);

  it('the old agent restarted: its journal began anew, so the next pass walks in full', async () => {
    await agents.old!.stop();
    await startOld();
    fs.appendFileSync(someMessage(), 'changed across the restart\n');
    const s = await sync();
    expect(mailWalk(s)).toMatchObject({ scoped: false, reason: expect.stringMatching(/restarted|began anew|epoch/) });
    await identical();
    expect(mailWalk(await sync())).toMatchObject({ scoped: true });
  });

  it('a foreign write on the new host while a pass runs is not taken for the agent\'s own', async () => {
    expect(mailWalk(await sync())).toMatchObject({ scoped: true });
    const box = fs.readdirSync(path.join(newRoot, MAIL))[0];
    const victim = path.join(newRoot, MAIL, box, 'dovecot-uidlist');
    const good = fs.readFileSync(path.join(oldRoot, MAIL, box, 'dovecot-uidlist'));
    // A writer on the new host that keeps rewriting one byte (same size, mtime put back)
    // while a pass runs, with a change on the old host so that the pass has work to do.
    fs.appendFileSync(someMessage(), 'work for the pass\n');
    const writer = spawn('python3', [
      '-c',
      `import os, time\np=${JSON.stringify(victim)}\nst=os.stat(p)\nend=time.time()+3\nwhile time.time()<end:\n  fd=os.open(p, os.O_WRONLY)\n  os.pwrite(fd, b'Z', 0)\n  os.close(fd)\n  os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))\n  time.sleep(0.02)`,
    ]);
    const during = await sync();
    await new Promise((r) => writer.on('exit', r));
    expect(mailWalk(during).scoped).toBe(true);
    // Whatever the pass saw of it, the writes after its start were others': the next pass fetches it again.
    expect(fs.readFileSync(victim).equals(good)).toBe(false);
    const after = await sync();
    expect(mailWalk(after).scoped).toBe(true);
    expect(fs.readFileSync(victim).equals(good)).toBe(true);
  });
  it('a root bind-mounted over on the old host: a full walk, and the new host gets what is mounted there', async () => {
    const mail = path.join(oldRoot, 'home/vmail/mail');
    const other = path.join(dir, 'other-mail');
    execFileSync('cp', ['-a', mail, other]);
    fs.writeFileSync(path.join(other, 'mail.example.org', 'only-in-the-mounted-tree'), 'x');
    execFileSync('mount', ['--bind', other, mail]);
    try {
      const s = await sync();
      expect(mailWalk(s)).toMatchObject({ scoped: false, reason: expect.stringMatching(/journal: .*mount|journal: .*changed/) });
      await identical();
      expect(fs.existsSync(path.join(newRoot, 'home/vmail/mail/mail.example.org/only-in-the-mounted-tree'))).toBe(true);
    } finally {
      execFileSync('umount', [mail]);
    }
    // The mount went again: the journal does not take that root on trust again until it
    // starts anew (an agent restart); until then every pass walks it in full.
    const back = await sync();
    expect(mailWalk(back).scoped).toBe(false);
    await identical();
    await agents.old!.stop();
    await startOld();
    await sync();
    expect(mailWalk(await sync())).toMatchObject({ scoped: true });
  });

});
