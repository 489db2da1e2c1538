/**
 * The tools cmmigrate is measured against, as an operator would run them: `tar c | tar x`,
 * `tar c | ssh HOST tar x` (the relay project's published procedure) and `rsync -aH` over
 * ssh, each a shell pipeline with `pipefail`, timed from spawn to exit. ssh goes to the
 * bench's own sshd (test/support/sshd.ts) as root with its own keys, BatchMode on.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { TestSshd } from '../support/sshd';

/** The ssh host names of the bench's client config. */
export const SSH_DIRECT = 'bench-direct';
export const SSH_DELAYED = 'bench-delayed';

export interface ShellResult {
  code: number | null;
  seconds: number;
  stderr: string;
}

/** Single-quote for bash. */
export function sh(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Run `bash -o pipefail -c cmd`; resolves with the exit code, wall seconds and stderr. */
export function runShell(cmd: string, timeoutMs = 3_600_000): Promise<ShellResult> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('bash', ['-o', 'pipefail', '-c', cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => {
      if (stderr.length < 64 * 1024) stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, seconds: Number(process.hrtime.bigint() - t0) / 1e9, stderr });
    });
  });
}

/**
 * Write an ssh client config beside the sshd: `bench-direct` reaches it directly,
 * `bench-delayed` through `delayedPort` on 127.0.0.1 (a delay proxy in front of it). Both
 * check the same host key, under one alias. Returns the config's path.
 */
export async function writeSshConfig(sshd: TestSshd, dir: string, delayedPort: number): Promise<string> {
  const hostPub = (await fs.readFile(path.join(sshd.dir, 'host_ed25519.pub'), 'utf8')).trim();
  const knownHosts = path.join(dir, 'known_hosts');
  await fs.writeFile(knownHosts, `bench-sshd ${hostPub}\n`);
  const common = [
    '  HostName 127.0.0.1',
    '  User root',
    `  IdentityFile ${path.join(sshd.dir, 'id_ed25519')}`,
    '  IdentitiesOnly yes',
    '  HostKeyAlias bench-sshd',
    `  UserKnownHostsFile ${knownHosts}`,
    '  GlobalKnownHostsFile /dev/null',
    '  StrictHostKeyChecking yes',
    '  BatchMode yes',
    '  LogLevel ERROR',
  ];
  const config = path.join(dir, 'ssh_config');
  await fs.writeFile(config, [`Host ${SSH_DIRECT}`, `  Port ${sshd.port}`, ...common, `Host ${SSH_DELAYED}`, `  Port ${delayedPort}`, ...common, ''].join('\n'));
  return config;
}

/** `tar c | tar x` of `roots` (relative to `src`) into `dst`. */
export function tarLocal(src: string, roots: string[], dst: string): string {
  return `tar -C ${sh(src)} -cf - ${roots.map(sh).join(' ')} | tar -C ${sh(dst)} -xf -`;
}

/** `tar c | ssh HOST 'tar x'`, as the published procedure's first step. */
export function tarSsh(sshConfig: string, host: string, src: string, roots: string[], dst: string): string {
  return `tar -C ${sh(src)} -cf - ${roots.map(sh).join(' ')} | ssh -F ${sh(sshConfig)} ${host} ${sh(`tar -C ${sh(dst)} -xf -`)}`;
}

/** `rsync -aH [--delete]` of `roots` over ssh; `-R` keeps their paths below `dst`. */
export function rsyncSsh(sshConfig: string, host: string, src: string, roots: string[], dst: string, del: boolean): string {
  const sources = roots.map((r) => sh(`${src}/./${r}`)).join(' ');
  return `rsync -aHR${del ? ' --delete' : ''} -e ${sh(`ssh -F ${sshConfig}`)} ${sources} ${sh(`${host}:${dst}/`)}`;
}
