/**
 * Folder agent/host/: what the controller asks of a host apart from moving its tree: the
 * host operations (this file), the external TLS files (external-tls.ts) and the Info
 * call's facts (info.ts). It imports fs/ and the checked requests (../requests.ts).
 *
 * Host operations of the agent: the fixed allowlist of proto/host-ops.ts, run with the
 * host's own `systemctl`, `postfix` and `postsuper` from the agent's PATH, never through a
 * shell, each with a timeout and a bounded tail of its output. Reads of
 * `<root>/etc/chatmail-version` and the free space of the mailboxes dir's filesystem
 * complete the set. Free of gRPC: agent/service.ts adapts it.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { CHATMAIL_VERSION_MAX_BYTES, CmError, HOST_OP_OUTPUT_MAX_BYTES, rootsForPhase, type HostOpName, type UnitName } from '../../proto';
import { runChild, type ChildResult } from '../../proto/child-run';
import type { Logger } from '../log';
import { parseExternalTlsWrite } from '../requests';
import { deployedExternalPaths, readExternalTls, writeExternalTls } from './external-tls';
import { resolveRoots, type AgentRoots } from '../fs/paths';
import { walkRoot } from '../fs/walk';

/** How long one host command may run before it is stopped (host.command_timeout). */
export const HOST_COMMAND_TIMEOUT_MS = 120_000;
/** After SIGTERM on timeout, how long before SIGKILL. */
const KILL_GRACE_MS = 5_000;

export interface HostOpsConfig {
  roots: AgentRoots;
  log: Logger;
  /** Per-command timeout; default HOST_COMMAND_TIMEOUT_MS. */
  timeoutMs?: number;
  /** The commands' environment, PATH included; default the agent's own. */
  env?: NodeJS.ProcessEnv;
  /** The agent's state dir (absolute): tls.external_write refuses paths inside it. */
  stateDir?: string;
}

export interface UnitStateResult {
  unit: UnitName;
  /** The word `systemctl is-active` printed: active, inactive, failed, activating, ... */
  state: string;
}

/** What an operation found; fields not relevant to the operation are left out. */
export interface HostOpResult {
  units?: UnitStateResult[];
  /** stdout and stderr of the command run (its tail). */
  output?: string;
  /** chatmail_version.read: the file's content, or undefined when absent. */
  chatmailVersion?: string;
  disk?: { path: string; freeBytes: number; totalBytes: number };
  /** tree.size: regular files of every root, hard links counted once. */
  tree?: { bytes: number; files: number };
}

type CommandResult = Pick<ChildResult, 'code' | 'signal' | 'stdout' | 'output'>;

/**
 * Run one host command: `file` from the PATH with `args`, no shell, through the one child
 * runner (proto/child-run.ts). Exit codes are returned, not thrown; a missing binary or a
 * timeout is a CmError.
 */
async function runCommand(file: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv): Promise<CommandResult> {
  const line = [file, ...args].join(' ');
  let r: ChildResult;
  try {
    // Only a bounded tail is kept and the command runs to its end; a grandchild that keeps
    // the pipes open must not hold the answer back for long after the command exited.
    r = await runChild(file, args, { env, timeoutMs, killGraceMs: KILL_GRACE_MS, pipeGraceMs: 2_000, maxOutputBytes: HOST_OP_OUTPUT_MAX_BYTES });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CmError('host.command_missing', `on ${os.hostname()}: ${file} is not on the agent's PATH (${env.PATH ?? ''})`, {
        hint: `install it on the host, or start cmmigrate-agent with a PATH that holds ${file}`,
        cause: err,
      });
    }
    throw new CmError('host.command_failed', `on ${os.hostname()}: cannot run \`${line}\`: ${(err as Error).message}`, { cause: err });
  }
  if (r.timedOut) {
    throw new CmError('host.command_timeout', `on ${os.hostname()}: \`${line}\` did not finish within ${Math.round(timeoutMs / 1000)} s and was stopped; its output: ${r.output.trim() || '(none)'}`, {
      hint: `look at the host (journalctl -xe) and run \`${line}\` there by hand, then run the same cmmigrate command again`,
    });
  }
  return r;
}

function commandFailed(file: string, args: string[], r: CommandResult): CmError {
  const line = [file, ...args].join(' ');
  const how = r.signal ? `was killed by ${r.signal}` : `exited with ${r.code}`;
  return new CmError('host.command_failed', `on ${os.hostname()}: \`${line}\` ${how}: ${r.output.trim() || '(no output)'}`, {
    hint: `run \`${line}\` on ${os.hostname()} to see why, fix it, then run the same cmmigrate command again`,
    details: { command: line, exit_code: r.code, signal: r.signal },
  });
}

/**
 * The host operations of one agent. Every method logs the operation, its units, the exit
 * code and the duration; never file contents.
 */
export class HostOpRunner {
  private readonly timeoutMs: number;
  private readonly env: NodeJS.ProcessEnv;

  constructor(private readonly cfg: HostOpsConfig) {
    this.timeoutMs = cfg.timeoutMs ?? HOST_COMMAND_TIMEOUT_MS;
    this.env = cfg.env ?? process.env;
  }

  /** Run `op`. The caller has checked `op` and `units` against the allowlist. */
  async run(op: HostOpName, units: UnitName[], input = ''): Promise<HostOpResult> {
    const started = process.hrtime.bigint();
    const fields: Record<string, unknown> = { op, units };
    try {
      const result = await this.dispatch(op, units, fields, input);
      this.cfg.log.info({ ...fields, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'host operation');
      return result;
    } catch (err) {
      const e = err as CmError;
      this.cfg.log.warn({ ...fields, code: e.code, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'host operation failed');
      throw err;
    }
  }

  private async dispatch(op: HostOpName, units: UnitName[], fields: Record<string, unknown>, input: string): Promise<HostOpResult> {
    switch (op) {
      case 'service.is_active':
        return { units: await this.isActive(units, fields) };
      case 'service.stop':
      case 'service.start':
      case 'service.restart': {
        const verb = op.slice('service.'.length);
        const r = await this.command('systemctl', [verb, ...units], fields);
        return { output: r.output, units: await this.isActive(units, {}) };
      }
      case 'postfix.set_permissions':
        return { output: (await this.command('postfix', ['set-permissions'], fields)).output };
      case 'postsuper.requeue':
        return { output: (await this.command('postsuper', ['-s'], fields)).output };
      case 'chatmail_version.read':
        return { chatmailVersion: await this.chatmailVersion(fields) };
      case 'disk.free':
        return { disk: await this.freeDisk() };
      case 'tree.size':
        return { tree: await this.treeSize(fields) };
      case 'systemd.daemon_reload':
        return { output: (await this.command('systemctl', ['daemon-reload'], fields)).output };
      case 'dkim.public_key':
        return { output: await this.dkimPublicKey(fields) };
      case 'tls.external_files':
        return { output: await this.externalTlsFiles(fields) };
      case 'os_release.read':
        return { output: await this.osRelease() };
      // External TLS files (agent/host/external-tls.ts): a separate block, kept apart for merges.
      case 'tls.external_read':
        return { output: JSON.stringify({ files: await readExternalTls(this.cfg.roots, fields) }) };
      case 'tls.external_write': {
        const stateDir = this.cfg.stateDir ?? path.join(this.cfg.roots.root, 'var/lib/cmmigrate');
        const req = parseExternalTlsWrite(input);
        return { output: JSON.stringify({ written: await writeExternalTls(req, this.cfg.roots, stateDir, fields) }) };
      }
      case 'acme.account_url':
        return { output: await this.acmeAccountUrl(fields) };
    }
  }

  /** The ACME account URL acmetool finds for the host's account key ('' when it fails, as upstream's fail_ok). */
  private async acmeAccountUrl(fields: Record<string, unknown>): Promise<string> {
    const r = await runCommand('acmetool', [`--state=${path.join(this.cfg.roots.root, 'var/lib/acme')}`, '--batch', 'account-url'], this.timeoutMs, this.env);
    fields.exit_code = r.code;
    if (r.code !== 0) return '';
    const url = r.stdout.trim().split('\n').pop() ?? '';
    return /^https?:\/\/\S+$/.test(url) ? url : '';
  }

  /** Run a command that must succeed. */
  private async command(file: string, args: string[], fields: Record<string, unknown>): Promise<CommandResult> {
    const r = await runCommand(file, args, this.timeoutMs, this.env);
    fields.exit_code = r.code;
    if (r.code !== 0) throw commandFailed(file, args, r);
    return r;
  }

  /** `systemctl is-active`: it exits nonzero for an inactive unit, which is an answer. */
  private async isActive(units: UnitName[], fields: Record<string, unknown>): Promise<UnitStateResult[]> {
    const args = ['is-active', ...units];
    const r = await runCommand('systemctl', args, this.timeoutMs, this.env);
    fields.exit_code = r.code;
    const lines = r.stdout.split('\n').filter((l) => l !== '');
    if (r.signal || lines.length !== units.length || !lines.every((l) => /^[a-z-]{1,32}$/.test(l))) {
      throw commandFailed('systemctl', args, r);
    }
    return units.map((unit, i) => ({ unit, state: lines[i] }));
  }

  /** `<root>/etc/chatmail-version`, at most CHATMAIL_VERSION_MAX_BYTES; undefined when absent. */
  private async chatmailVersion(fields: Record<string, unknown>): Promise<string | undefined> {
    const file = path.join(this.cfg.roots.root, 'etc/chatmail-version');
    let fh: fs.FileHandle;
    try {
      // Not through a symlink: under a --root that is a foreign tree it could point anywhere.
      fh = await fs.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT') {
        fields.present = false;
        return undefined;
      }
      if (e.code === 'ELOOP') throw new CmError('host.bad_file', `on ${os.hostname()}: /etc/chatmail-version is a symlink; it is not read`, { cause: err });
      throw new CmError('host.bad_file', `on ${os.hostname()}: cannot read /etc/chatmail-version: ${e.message}`, { cause: err });
    }
    try {
      if (!(await fh.stat()).isFile()) throw new CmError('host.bad_file', `on ${os.hostname()}: /etc/chatmail-version is not a regular file`);
      const buf = Buffer.alloc(CHATMAIL_VERSION_MAX_BYTES);
      let n = 0;
      while (n < buf.length) {
        const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      fields.present = true;
      fields.bytes = n;
      return buf.subarray(0, n).toString('utf8');
    } finally {
      await fh.close();
    }
  }

  /** `<root>/etc/os-release` (or `<root>/usr/lib/os-release`), its first 8 KiB; empty when there is none. */
  private async osRelease(): Promise<string> {
    for (const rel of ['etc/os-release', 'usr/lib/os-release']) {
      try {
        const text = await fs.readFile(path.join(this.cfg.roots.root, rel), 'utf8');
        return text.slice(0, HOST_OP_OUTPUT_MAX_BYTES);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new CmError('host.bad_file', `on ${os.hostname()}: cannot read /${rel}: ${(err as Error).message}`, { cause: err });
      }
    }
    return '';
  }

  /**
   * The external TLS files of the host's deployed chatmail.ini that exist as regular files (a
   * symlink to one counts, as pyinfra's File fact that upstream's ExternalTlsDeployer checks),
   * one path a line. Nothing is read from them.
   */
  private async externalTlsFiles(fields: Record<string, unknown>): Promise<string> {
    const paths = await deployedExternalPaths(this.cfg.roots.root);
    const present: string[] = [];
    for (const p of paths) {
      const st = await fs.stat(path.join(this.cfg.roots.root, p)).catch(() => undefined);
      if (st?.isFile()) present.push(p);
    }
    fields.files = present.length;
    return present.map((p) => `${p}\n`).join('');
  }

  /**
   * The base64 SubjectPublicKeyInfo of `<root>/etc/dkimkeys/opendkim.private` (PKCS#1 or
   * PKCS#8), as chatmail/relay's `cmdeploy dns` derives it (cmdeploy/src/cmdeploy/remote/rdns.py
   * get_dkim_entry: `openssl rsa -pubout`). Only the public key is returned or logged.
   */
  private async dkimPublicKey(fields: Record<string, unknown>): Promise<string> {
    const file = path.join(this.cfg.roots.root, 'etc/dkimkeys/opendkim.private');
    let pem: Buffer;
    try {
      const fh = await fs.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
      try {
        if (!(await fh.stat()).isFile()) throw new CmError('host.bad_file', `on ${os.hostname()}: /etc/dkimkeys/opendkim.private is not a regular file`);
        pem = await fh.readFile();
      } finally {
        await fh.close();
      }
    } catch (err) {
      if (err instanceof CmError) throw err;
      const e = err as NodeJS.ErrnoException;
      const why = e.code === 'ENOENT' ? 'does not exist' : e.code === 'ELOOP' ? 'is a symlink; it is not read' : `cannot be read (${e.code ?? e.message})`;
      throw new CmError('host.bad_file', `on ${os.hostname()}: /etc/dkimkeys/opendkim.private ${why}`, { cause: err });
    }
    try {
      const pub = createPublicKey(createPrivateKey({ key: pem, format: 'pem' })).export({ type: 'spki', format: 'der' }).toString('base64');
      fields.present = true;
      return pub;
    } catch {
      throw new CmError('host.bad_file', `on ${os.hostname()}: /etc/dkimkeys/opendkim.private is not a PEM private key`);
    } finally {
      pem.fill(0);
    }
  }

  /** Bytes and count of the regular files of every root (a final pass's scope), each inode once. */
  private async treeSize(fields: Record<string, unknown>): Promise<{ bytes: number; files: number }> {
    const seen = new Set<string>();
    let bytes = 0;
    let files = 0;
    for (const root of resolveRoots(this.cfg.roots, rootsForPhase('final'), this.cfg.roots.mailboxesDir)) {
      for await (const e of walkRoot(root)) {
        if (e.type !== 'file') continue;
        if (e.st.nlink > 1n) {
          const key = `${e.st.dev}:${e.st.ino}`;
          if (seen.has(key)) continue;
          seen.add(key);
        }
        bytes += Number(e.st.size);
        files += 1;
      }
    }
    fields.files = files;
    return { bytes, files };
  }

  /** statfs of the mailboxes dir, or of its nearest existing ancestor under --root. */
  private async freeDisk(): Promise<{ path: string; freeBytes: number; totalBytes: number }> {
    const { root, mailboxesDir } = this.cfg.roots;
    for (let host = mailboxesDir; ; host = path.posix.dirname(host)) {
      try {
        const s = await fs.statfs(path.join(root, host));
        return { path: host, freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if ((code !== 'ENOENT' && code !== 'ENOTDIR') || host === '/') {
          throw new CmError('host.statfs_failed', `on ${os.hostname()}: cannot examine the filesystem of ${host} under ${root}: ${(err as Error).message}`, { cause: err });
        }
      }
    }
  }
}
