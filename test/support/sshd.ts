/**
 * A real OpenSSH server for installation tests: Debian's `sshd` on 127.0.0.1 and a free
 * port, with its own host key, one authorized client key, and a client config that trusts
 * exactly that host key. The ssh side's PATH starts with test/support/host-tools, whose
 * `systemctl` (with FAKE_SYSTEMD_STATE set) runs units as background processes (CI has no
 * systemd as init).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { freePort, REPO } from './harness';

const run = promisify(execFile);

export const SSHD = '/usr/sbin/sshd';
/** The stand-in systemctl and journalctl (test/support/host-tools, shared with the agents' host operations). */
export const FAKE_SYSTEMD_BIN = path.join(REPO, 'test', 'support', 'host-tools');
/** The stand-in apt-get and dpkg-query, and an old node (v16) that comes first on the PATH. */
export const FAKE_APT_BIN = path.join(REPO, 'test', 'support', 'fake-apt');

export interface TestSshd {
  port: number;
  dir: string;
  /** Where the stand-in systemctl keeps pids and logs. */
  systemdState: string;
  /** `-F <client config>`: give it to cmmigrate as CMMIGRATE_SSH_OPTS. */
  sshOptions: string;
  /** Client config whose listed host aliases all lead to this sshd. */
  clientConfig: string;
  /** sshd's own log so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

async function keygen(file: string): Promise<string> {
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'cmmigrate-test', '-f', file]);
  return (await fs.readFile(`${file}.pub`, 'utf8')).trim();
}

function waitForPort(host: string, port: number, child: ChildProcess, log: () => string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      if (child.exitCode !== null) return reject(new Error(`sshd exited with ${child.exitCode}:\n${log()}`));
      const s = net.connect(port, host);
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`sshd did not listen on ${host}:${port}:\n${log()}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

export interface SshdOptions {
  /** The ssh destinations' host names (for example the plan's 127.0.0.3) that the client config maps to this server. */
  aliases: string[];
  /** Directories put first on the ssh side's PATH (before the stand-in systemctl). */
  path?: string[];
  /** More variables of every ssh session (no spaces in values). */
  env?: Record<string, string>;
}

/** Start sshd as root. */
export async function startSshd(opts: SshdOptions): Promise<TestSshd> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-sshd-'));
  const systemdState = path.join(dir, 'systemd');
  await fs.mkdir(systemdState);
  const hostPub = await keygen(path.join(dir, 'host_ed25519'));
  const clientPub = await keygen(path.join(dir, 'id_ed25519'));
  await fs.writeFile(path.join(dir, 'authorized_keys'), clientPub + '\n', { mode: 0o600 });
  // sshd refuses to start without its privilege separation directory (the ssh.service
  // unit makes it on a real host).
  await fs.mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  for (const d of [FAKE_SYSTEMD_BIN, FAKE_APT_BIN]) {
    for (const f of await fs.readdir(d)) await fs.chmod(path.join(d, f), 0o755);
  }

  const port = await freePort('127.0.0.1');
  const sshdConfig = path.join(dir, 'sshd_config');
  await fs.writeFile(
    sshdConfig,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${path.join(dir, 'host_ed25519')}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      // The temp dir is world-readable /tmp: the keys' modes are right, their parents not.
      'StrictModes no',
      'PrintMotd no',
      'LogLevel VERBOSE',
      `SetEnv ${Object.entries({
        PATH: [...(opts.path ?? []), FAKE_SYSTEMD_BIN, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'].join(':'),
        FAKE_SYSTEMD_STATE: systemdState,
        ...opts.env,
      })
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}`,
      '',
    ].join('\n'),
  );
  const knownHosts = path.join(dir, 'known_hosts');
  await fs.writeFile(knownHosts, `[127.0.0.1]:${port} ${hostPub}\n`);
  const clientConfig = path.join(dir, 'ssh_config');
  await fs.writeFile(
    clientConfig,
    [
      `Host ${opts.aliases.join(' ')}`,
      '  HostName 127.0.0.1',
      `  Port ${port}`,
      '  User root',
      `  IdentityFile ${path.join(dir, 'id_ed25519')}`,
      '  IdentitiesOnly yes',
      `  UserKnownHostsFile ${knownHosts}`,
      '  GlobalKnownHostsFile /dev/null',
      '  StrictHostKeyChecking yes',
      'Host *',
      `  UserKnownHostsFile ${knownHosts}`,
      '  GlobalKnownHostsFile /dev/null',
      `  IdentityFile ${path.join(dir, 'id_ed25519')}`,
      '  IdentitiesOnly yes',
      '',
    ].join('\n'),
  );

  const child = spawn(SSHD, ['-D', '-e', '-f', sshdConfig], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d) => (log += d));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await waitForPort('127.0.0.1', port, child, () => log);
  return {
    port,
    dir,
    systemdState,
    sshOptions: `-F ${clientConfig}`,
    clientConfig,
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
