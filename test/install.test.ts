/**
 * Installing the agent over ssh (issue 4), against a real sshd on loopback: the new
 * host's paths are rooted in a temp directory (CMMIGRATE_REMOTE_PREFIX), and a stand-in
 * systemctl on the ssh side runs the unit's ExecStart, so the installed agent really
 * listens, answers over mTLS, and takes part in a sync with an agent started here.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import * as os from 'node:os';
import { AGENT_NODE_FLAGS, PROTOCOL_VERSION } from '../proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALL_ROOT_PATHS, cmmigrate, freePort, REPO, startAgentProcess, type AgentProcess, type CliResult } from './support/harness';
import { generateRelayTree, writeIdentity } from './support/relay-tree';
import { checkHost, decodeProcAddress, nodeUsable, parseProbe, portConflicts, type HostFacts } from '../controller/remote-facts';
import { FAKE_APT_BIN, startSshd, type TestSshd } from './support/sshd';

const UNIT = 'cmmigrate-agent.service';
const BUNDLE = path.join(REPO, 'dist', 'cmmigrate-agent.js');
const DEBIAN_12 = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\nID=debian\n';
const UBUNTU = 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\n';

/** A host root as a Debian host with systemd has it, before anything of ours is there. */
async function makeHostRoot(root: string, osRelease = DEBIAN_12): Promise<void> {
  await fs.mkdir(path.join(root, 'etc/systemd/system/multi-user.target.wants'), { recursive: true });
  await fs.mkdir(path.join(root, 'opt'), { recursive: true });
  await fs.writeFile(path.join(root, 'etc/os-release'), osRelease);
  await writeIdentity(root, 7000);
}

/** Every path below `root`, relative, with its type and mode. */
async function listTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of await fs.readdir(path.join(root, rel))) {
      const r = path.join(rel, name);
      const st = await fs.lstat(path.join(root, r));
      out.push(`${r} ${st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'link' : 'file'} ${(st.mode & 0o7777).toString(8)}`);
      if (st.isDirectory()) await walk(r);
    }
  };
  await walk('');
  return out.sort();
}

/** The listing without the relay's roots (and their parents), which a sync writes. */
function outsideRelayRoots(listing: string[]): string[] {
  const roots = ALL_ROOT_PATHS.map((r) => r.slice(1));
  return listing.filter((line) => {
    const p = line.split(' ')[0];
    return !roots.some((r) => p === r || p.startsWith(r + '/') || r.startsWith(p + '/'));
  });
}

const digest = async (file: string): Promise<string> => createHash('sha256').update(await fs.readFile(file)).digest('hex');

/** Whether `pid` runs (an exited process that nobody reaped yet does not). */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

/** The plan file with one TOML line replaced (the plan as a person would edit it). */
async function planVariant(plan: string, name: string, from: string | RegExp, to: string): Promise<string> {
  const text = await fs.readFile(plan, 'utf8');
  const changed = text.replace(from, to);
  expect(changed).not.toBe(text);
  const file = path.join(path.dirname(plan), name);
  await fs.writeFile(file, changed);
  return file;
}

describe('host checks before anything changes', () => {
  const target = { side: 'new', destination: 'root@203.0.113.20' };
  const debian = (): HostFacts =>
    parseProbe(
      ['uid=0', 'hostname=relay2', 'os_release=yes', 'os_ID=debian', 'os_VERSION_ID=13', 'os_PRETTY_NAME=Debian GNU/Linux 13 (trixie)', 'systemctl=systemd 257 (257.9-1~deb13u1)', 'active=inactive', 'node_path=/usr/bin/node', 'node_version=v20.19.2', 'apt=yes'].join('\n'),
    );
  const codeOf = (f: HostFacts): string => {
    try {
      checkHost(target, f, 'plan.toml');
      return 'ok';
    } catch (err) {
      return (err as { code: string }).code;
    }
  };

  it('accepts Debian 12 and 13 with systemd, and refuses the rest by name', () => {
    expect(codeOf(debian())).toBe('ok');
    expect(codeOf({ ...debian(), os: { id: 'debian', versionId: '11', prettyName: 'Debian GNU/Linux 11 (bullseye)' } })).toBe('precondition.unsupported_debian');
    expect(codeOf({ ...debian(), os: { id: 'debian', versionId: '', prettyName: 'Debian GNU/Linux trixie/sid' } })).toBe('precondition.unsupported_debian');
    expect(codeOf({ ...debian(), osRelease: false })).toBe('precondition.not_debian');
    expect(codeOf({ ...debian(), uid: 1000 })).toBe('precondition.not_root');
    expect(codeOf({ ...debian(), systemctl: undefined })).toBe('precondition.no_systemd');
    expect(codeOf({ ...debian(), systemdDown: true })).toBe('precondition.no_systemd');
    expect(codeOf({ ...debian(), node: undefined, apt: false })).toBe('precondition.no_node');
  });

  it('wants Node.js 18.19 or newer', () => {
    expect(['v18.19.0', 'v18.20.4', 'v20.19.2', 'v22.0.0'].map(nodeUsable)).toEqual([true, true, true, true]);
    expect(['v18.13.0', 'v16.20.2', 'v12.22.12', '', 'garbage'].map(nodeUsable)).toEqual([false, false, false, false, false]);
  });

  it('reads listeners from /proc/net/tcp{,6} and finds the ones in the way', () => {
    expect(decodeProcAddress('0300007F')).toBe('127.0.0.3');
    expect(decodeProcAddress('00000000')).toBe('0.0.0.0');
    expect(decodeProcAddress('00000000000000000000000001000000')).toBe('::1');
    expect(decodeProcAddress('00000000000000000000000000000000')).toBe('::');
    expect(decodeProcAddress('0000000000000000FFFF00000300007F')).toBe('::ffff:127.0.0.3');
    expect(decodeProcAddress('B80D0120000000000000000002000000')).toBe('2001:db8::2');
    const f = (listeners: string[], more: Partial<HostFacts> = {}): HostFacts => ({ ...debian(), listeners, ...more });
    expect(portConflicts(f(['127.0.0.2']), '127.0.0.3', '127.0.0.3:7826')).toEqual([]);
    expect(portConflicts(f(['0.0.0.0']), '127.0.0.3', '127.0.0.3:7826')).toEqual(['0.0.0.0']);
    expect(portConflicts(f(['::']), '203.0.113.20', '203.0.113.20:7826')).toEqual(['::']);
    expect(portConflicts(f(['::ffff:127.0.0.3']), '127.0.0.3', '127.0.0.3:7826')).toEqual(['::ffff:127.0.0.3']);
    expect(portConflicts(f(['127.0.0.1']), 'relay2.example.org', 'relay2.example.org:7826')).toEqual(['127.0.0.1']);
    // Our own agent on that address: a restart frees it.
    expect(portConflicts(f(['127.0.0.3'], { active: 'active', unitListen: '127.0.0.3:7826' }), '127.0.0.3', '127.0.0.3:7826')).toEqual([]);
  });
});

describe('install-agent, agents, uninstall-agent over ssh', { timeout: 240_000 }, () => {
  let sshd: TestSshd;
  let dir: string;
  let plan: string;
  let hostRoot: string;
  let oldAgent: AgentProcess;
  let oldAddress: string;
  let newAddress: string;
  let newPort: number;
  let env: NodeJS.ProcessEnv;
  let pristine: string[];
  const pidFile = (): string => path.join(sshd.systemdState, `${UNIT}.pid`);
  const cli = (args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<CliResult> => cmmigrate(args, { cwd: dir, env: { ...env, ...extraEnv }, timeoutMs: 90_000 });

  beforeAll(async () => {
    sshd = await startSshd({ aliases: ['127.0.0.2', '127.0.0.3'] });
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-install-'));
    const oldRoot = path.join(dir, 'old');
    await generateRelayTree({ root: oldRoot, seed: 4, addresses: 3, messagesPerAddress: 5, uidBase: 5000 });
    hostRoot = path.join(dir, 'new-host');
    await makeHostRoot(hostRoot);
    pristine = await listTree(hostRoot);
    const [po, pn] = await Promise.all([freePort('127.0.0.2'), freePort('127.0.0.3')]);
    oldAddress = `127.0.0.2:${po}`;
    newAddress = `127.0.0.3:${pn}`;
    newPort = pn;
    plan = path.join(dir, 'plan.toml');
    const init = await cmmigrate(['init', '--plan', plan, '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3', '--old-agent', oldAddress, '--new-agent', newAddress]);
    expect(init.code, init.stderr).toBe(0);
    oldAgent = await startAgentProcess({ listen: oldAddress, root: oldRoot, tlsDir: path.join(dir, '.cmmigrate/tls/old') });
    env = { CMMIGRATE_SSH_OPTS: sshd.sshOptions, CMMIGRATE_REMOTE_PREFIX: hostRoot };
  }, 60_000);

  afterAll(async () => {
    // Whatever a failed test left running.
    const pid = await fs.readFile(pidFile(), 'utf8').catch(() => '');
    if (pid && running(Number(pid))) process.kill(Number(pid), 'SIGKILL');
    await oldAgent?.stop();
    await sshd?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  describe('failures say what is wrong and leave nothing behind', () => {
    it('ssh refused: nothing listens on the ssh port', async () => {
      const closed = await freePort('127.0.0.1');
      const p = await planVariant(plan, 'plan-refused.toml', 'ssh = "root@127.0.0.3"', `ssh = "ssh://root@127.0.0.1:${closed}"`);
      const r = await cli(['install-agent', 'new', '--plan', p]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('[ssh.refused]');
      expect(r.stderr).toMatch(/new host \(ssh ssh:\/\/root@127\.0\.0\.1:\d+\).*refused/);
      expect(r.stderr).toContain('next: check that sshd runs');
      expect(await listTree(hostRoot)).toEqual(pristine);
    });

    it('ssh login refused', async () => {
      const p = await planVariant(plan, 'plan-auth.toml', 'ssh = "root@127.0.0.3"', 'ssh = "nosuchuser@127.0.0.3"');
      const r = await cli(['install-agent', 'new', '--plan', p]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('[ssh.auth_failed]');
      expect(r.stderr).toMatch(/the new host \(ssh nosuchuser@127\.0\.0\.3\) refused the login: .*Permission denied/);
      expect(r.stderr).toContain('next: cmmigrate runs ssh without prompts');
    }, 120_000);

    it('a host that is not Debian', async () => {
      const other = path.join(dir, 'ubuntu-host');
      await makeHostRoot(other, UBUNTU);
      const before = await listTree(other);
      const r = await cli(['install-agent', 'new', '--plan', plan], { CMMIGRATE_REMOTE_PREFIX: other });
      expect(r.code).toBe(3);
      expect(r.stderr).toContain('[precondition.not_debian]');
      expect(r.stderr).toContain('the new host (root@127.0.0.3) runs Ubuntu 24.04.1 LTS (ID=ubuntu), not Debian');
      expect(await listTree(other)).toEqual(before);
    });

    it('the agent port already taken on the host', async () => {
      const squatter = net.createServer();
      await new Promise<void>((resolve) => squatter.listen(newPort, '127.0.0.3', resolve));
      try {
        const r = await cli(['install-agent', 'new', '--plan', plan]);
        expect(r.code).toBe(3);
        expect(r.stderr).toContain('[precondition.port_in_use]');
        expect(r.stderr).toContain(`port ${newPort} is already in use on the new host (root@127.0.0.3): something listens on 127.0.0.3:${newPort}`);
      } finally {
        await new Promise((resolve) => squatter.close(resolve));
      }
      expect(await listTree(hostRoot)).toEqual(pristine);
    });

    it('an agent that exits at start: the run is undone', async () => {
      // The plan accepts a mailboxes_dir one level deep; the agent refuses it.
      const p = await planVariant(plan, 'plan-bad-mailboxes.toml', 'mailboxes_dir = "/home/vmail/mail"', 'mailboxes_dir = "/srv"');
      const r = await cli(['install-agent', 'new', '--plan', p]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('[install.agent_not_started]');
      expect(r.stderr).toContain('at least two levels deep');
      expect(r.stderr).toContain('undoing this run');
      expect(await listTree(hostRoot)).toEqual(pristine);
      expect(await fs.readFile(pidFile(), 'utf8').catch(() => 'none')).toBe('none');
    });
  });

  describe('the whole life of an installed agent', () => {
    let pid: number;

    it('install-agent uploads, starts, and waits for the answer over mTLS', async () => {
      const r = await cli(['install-agent', 'new', '--plan', plan]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain('checking root@127.0.0.3');
      expect(r.stderr).toContain('[$ ssh -F ');
      expect(r.stderr).toContain('uploading cmmigrate-agent.js');
      expect(r.stdout).toMatch(new RegExp(`new  ${newAddress.replace(/\./g, '\\.')}  cmmigrate-agent \\d+\\.\\d+\\.\\d+ \\(protocol ${PROTOCOL_VERSION}, node v\\d+`));
      expect(r.stdout).toContain(`host ${os.hostname()}, Debian GNU/Linux 12 (bookworm)`);
      expect(r.stdout).toMatch(/[\d.]+ [KMGT]?i?B free under \/home\/vmail\/mail/);

      const opt = path.join(hostRoot, 'opt/cmmigrate');
      expect(await digest(path.join(opt, 'cmmigrate-agent.js'))).toBe(await digest(BUNDLE));
      for (const [rel, mode] of [['.', 0o755], ['cmmigrate-agent.js', 0o755], ['tls', 0o700], ['tls/ca.crt', 0o644], ['tls/agent.crt', 0o644], ['tls/agent.key', 0o600], ['state', 0o700]] as const) {
        const st = await fs.stat(path.join(opt, rel));
        expect([rel, st.mode & 0o7777, st.uid, st.gid]).toEqual([rel, mode, 0, 0]);
      }
      expect(await digest(path.join(opt, 'tls/agent.key'))).toBe(await digest(path.join(dir, '.cmmigrate/tls/new/agent.key')));
      const unit = await fs.readFile(path.join(hostRoot, 'etc/systemd/system', UNIT), 'utf8');
      expect(unit).toContain('Restart=on-failure');
      expect(unit).toMatch(new RegExp(`^ExecStart=/\\S*node ${AGENT_NODE_FLAGS.join(' ')} ${opt}/cmmigrate-agent.js serve --listen ${newAddress} --root ${hostRoot} --tls-dir ${opt}/tls --mailboxes-dir /home/vmail/mail --state-dir ${opt}/state$`, 'm'));
      expect(await fs.readlink(path.join(hostRoot, 'etc/systemd/system/multi-user.target.wants', UNIT))).toBe(`/etc/systemd/system/${UNIT}`);
      await expect(fs.stat(path.join(opt, '.rollback'))).rejects.toThrow();
      pid = Number(await fs.readFile(pidFile(), 'utf8'));
      expect(running(pid)).toBe(true);
    }, 60_000);

    it('running it again changes nothing', async () => {
      const before = await listTree(hostRoot);
      const mtime = (await fs.stat(path.join(hostRoot, 'opt/cmmigrate/cmmigrate-agent.js'))).mtimeMs;
      const r = await cli(['install-agent', 'new', '--plan', plan]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain('nothing to change');
      expect(r.stderr).not.toContain('uploading');
      expect(Number(await fs.readFile(pidFile(), 'utf8'))).toBe(pid);
      expect(await listTree(hostRoot)).toEqual(before);
      expect((await fs.stat(path.join(hostRoot, 'opt/cmmigrate/cmmigrate-agent.js'))).mtimeMs).toBe(mtime);
    }, 60_000);

    it('a key with the wrong mode is set right without a restart', async () => {
      await fs.chmod(path.join(hostRoot, 'opt/cmmigrate/tls/agent.key'), 0o644);
      const r = await cli(['install-agent', 'new', '--plan', plan]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(`setting owner root and modes of ${hostRoot}/opt/cmmigrate/tls/agent.key`);
      expect(r.stderr).not.toMatch(/uploading|restarting/);
      expect((await fs.stat(path.join(hostRoot, 'opt/cmmigrate/tls/agent.key'))).mode & 0o777).toBe(0o600);
      expect(Number(await fs.readFile(pidFile(), 'utf8'))).toBe(pid);
    });

    it('agents shows both agents', async () => {
      const r = await cli(['agents', '--plan', plan, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
      expect(rows.map((x) => [x.side, x.address, x.reachable])).toEqual([
        ['old', oldAddress, true],
        ['new', newAddress, true],
      ]);
      expect(rows[1].root).toBe(hostRoot);
      expect(rows[1].os).toBe('Debian GNU/Linux 12 (bookworm)');
      expect(rows[1].free_bytes).toBeGreaterThan(0);
    });

    it('a sync goes through the installed agent', async () => {
      for (const phase of ['initial', 'final']) {
        const r = await cli(['sync', '--plan', plan, '--phase', phase, '--json']);
        expect(r.code, r.stderr).toBe(0);
        expect(JSON.parse(r.stdout.trim().split('\n').pop()!).files).toBeGreaterThan(0);
      }
      const v = await cli(['verify', '--plan', plan]);
      expect(v.code, v.stderr).toBe(0);
      expect((await fs.readdir(path.join(hostRoot, 'home/vmail/mail/mail.example.org'))).length).toBe(3);
    }, 60_000);

    it('a different bundle on the host is upgraded and the agent restarted', async () => {
      await fs.appendFile(path.join(hostRoot, 'opt/cmmigrate/cmmigrate-agent.js'), '\n// an older build\n');
      const r = await cli(['install-agent', 'new', '--plan', plan]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/uploading cmmigrate-agent\.js \([\d.]+ MiB, an upgrade\) to /);
      expect(r.stderr).toContain('restarting cmmigrate-agent.service');
      expect(r.stderr).not.toMatch(/uploading .*agent\.key/);
      expect(await digest(path.join(hostRoot, 'opt/cmmigrate/cmmigrate-agent.js'))).toBe(await digest(BUNDLE));
      expect(running(pid)).toBe(false);
      pid = Number(await fs.readFile(pidFile(), 'utf8'));
      expect(running(pid)).toBe(true);
    }, 60_000);

    it('uninstall-agent removes everything it installed', async () => {
      const r = await cli(['uninstall-agent', 'new', '--plan', plan]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(`stopped, disabled and removed ${UNIT}`);
      expect(r.stderr).toContain(`removed ${hostRoot}/opt/cmmigrate`);
      expect(running(pid)).toBe(false);
      await expect(fs.stat(pidFile())).rejects.toThrow();
      expect(await canListen('127.0.0.3', newPort)).toBe(true);
      // Only what the sync copied is new on the host.
      expect(outsideRelayRoots(await listTree(hostRoot))).toEqual(outsideRelayRoots(pristine));

      const again = await cli(['uninstall-agent', 'new', '--plan', plan]);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toContain('nothing of cmmigrate was installed there');
    }, 60_000);

    it('agents then says the new agent is unreachable', async () => {
      const r = await cli(['agents', '--plan', plan]);
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(`old  ${oldAddress}  cmmigrate-agent`);
      expect(r.stdout).toContain(`new  ${newAddress}  NOT REACHABLE`);
      expect(r.stderr).toContain('[agents.unreachable]');
      expect(r.stderr).toContain(`cmmigrate install-agent new --plan ${plan}`);
    });
  });

  describe("Debian's nodejs through apt-get where the host has no usable node", () => {
    // A host whose only node is an old v16 (first on the PATH); apt-get and dpkg-query
    // are stand-ins whose "installed" packages are lines of a file.
    let aptSshd: TestSshd;
    let state: string;
    let root: string;
    let aptPlan: string;
    let before: string[];
    const run = (args: string[]): Promise<CliResult> =>
      cmmigrate(args, { cwd: dir, env: { CMMIGRATE_SSH_OPTS: aptSshd.sshOptions, CMMIGRATE_REMOTE_PREFIX: root }, timeoutMs: 90_000 });
    const installed = async (): Promise<string[]> => (await fs.readFile(path.join(state, 'installed'), 'utf8')).split('\n').filter(Boolean).sort();

    beforeAll(async () => {
      state = path.join(dir, 'apt-state');
      await fs.mkdir(state);
      await fs.writeFile(path.join(state, 'installed'), 'bash\ncoreutils\nlibuv1\n');
      aptSshd = await startSshd({ aliases: ['127.0.0.3'], path: [FAKE_APT_BIN], env: { FAKE_APT_STATE: state } });
      root = path.join(dir, 'apt-host');
      await makeHostRoot(root);
      before = await listTree(root);
      aptPlan = await planVariant(plan, 'plan-apt.toml', `agent = "${newAddress}"`, `agent = "127.0.0.3:${await freePort('127.0.0.3')}"`);
    });
    afterAll(async () => {
      const pid = await fs.readFile(path.join(aptSshd.systemdState, `${UNIT}.pid`), 'utf8').catch(() => '');
      if (pid && running(Number(pid))) process.kill(Number(pid), 'SIGKILL');
      await aptSshd?.stop();
    });

    it('apt-get fails: the error says so and nothing is left', async () => {
      await fs.writeFile(path.join(state, 'broken'), '');
      const r = await run(['install-agent', 'new', '--plan', aptPlan]);
      await fs.rm(path.join(state, 'broken'));
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('[apt.install_failed]');
      expect(r.stderr).toContain('apt-get could not install nodejs on the new host (root@127.0.0.3): E: Unable to locate package nodejs');
      expect(await listTree(root)).toEqual(before);
      expect(await installed()).toEqual(['bash', 'coreutils', 'libuv1']);
    });

    it('installs nodejs, records what apt added, and uninstall-agent removes exactly that', async () => {
      const r = await run(['install-agent', 'new', '--plan', aptPlan]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(`installing Debian's nodejs with apt-get (${FAKE_APT_BIN}/node is v16.20.2`);
      expect(r.stderr).toContain('apt-get added libnode108, nodejs; node v');
      expect(await fs.readFile(path.join(root, 'opt/cmmigrate/installed-packages'), 'utf8')).toBe('libnode108\nnodejs\n');
      expect(await fs.readFile(path.join(root, 'etc/systemd/system', UNIT), 'utf8')).toContain('ExecStart=/usr/bin/node ');
      expect(await installed()).toEqual(['bash', 'coreutils', 'libnode108', 'libuv1', 'nodejs']);

      const u = await run(['uninstall-agent', 'new', '--plan', aptPlan]);
      expect(u.code, u.stderr).toBe(0);
      expect(u.stderr).toContain('removed libnode108, nodejs (installed by install-agent)');
      expect(await installed()).toEqual(['bash', 'coreutils', 'libuv1']);
      expect(await listTree(root)).toEqual(before);
    }, 60_000);

    it('uninstall-agent keeps nodejs when a package installed since depends on it', async () => {
      expect((await run(['install-agent', 'new', '--plan', aptPlan])).code).toBe(0);
      await fs.appendFile(path.join(state, 'installed'), 'npm\n');
      await fs.writeFile(path.join(state, 'dependents'), 'npm\n');
      const u = await run(['uninstall-agent', 'new', '--plan', aptPlan]);
      expect(u.code, u.stderr).toBe(0);
      expect(u.stderr).toContain('kept libnode108, nodejs: removing them would also remove npm, installed since');
      expect(await installed()).toContain('nodejs');
      expect(await listTree(root)).toEqual(before);
    }, 60_000);
  });
});
