/**
 * Commands on a relay host over the system `ssh` binary, so that the operator's
 * ~/.ssh/config, ssh-agent and known_hosts apply. ssh never prompts (BatchMode=yes): a
 * host that needs a password or an unknown host key fails with a CmError that names the
 * host, says what ssh refused, and what to do. Extra ssh options come from
 * CMMIGRATE_SSH_OPTS (whitespace-separated, e.g. "-F ./ssh_config -i ~/.ssh/relay").
 */
import { CmError, ExitCode, RERUN } from '../proto';
import { runChild, type ChildResult } from '../proto/child-run';

/** ssh's output kept per stream: far more than any script here prints. */
const MAX_OUTPUT = 16 * 1024 * 1024;

export interface SshTarget {
  /** 'old' or 'new': which host of the plan, for messages. */
  side: string;
  /** The ssh destination from the plan, e.g. root@203.0.113.10 or ssh://root@host:2222. */
  destination: string;
}

export interface RemoteResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunRemoteOptions {
  /** Sent to the remote command's stdin (then closed). */
  input?: Buffer;
  /** Kill ssh after this long; default 2 minutes. */
  timeoutMs?: number;
  /** Environment of the ssh process (tests); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** The shown command line, `[$ ...]`, for the step log. */
  onCommand?: (line: string) => void;
  /** What the script does, for that line (default "script"). */
  label?: string;
  /** Aborting it stops ssh: a CmError step.interrupted (exit 130). */
  signal?: AbortSignal;
}

/** Options that make ssh fit for a program: no prompt, no forwarding, bounded waits. */
const FIXED_OPTIONS = ['-o', 'BatchMode=yes'];
const DEFAULT_OPTIONS = [
  '-o', 'ConnectTimeout=15',
  '-o', 'ServerAliveInterval=15',
  '-o', 'ServerAliveCountMax=4',
  '-o', 'ForwardAgent=no',
  '-o', 'ForwardX11=no',
  '-o', 'LogLevel=ERROR',
  '-T',
];

/** A word quoted for a POSIX shell. */
export function shQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The operator's extra ssh options from CMMIGRATE_SSH_OPTS. */
export function extraSshOptions(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.CMMIGRATE_SSH_OPTS ?? '').split(/\s+/).filter(Boolean);
}

/**
 * The argv of ssh that runs `script` with `sh` on the host: the script travels in the
 * command line, so stdin stays free for data. Options given by the operator come before
 * the defaults, so they win (ssh takes an option's first value); BatchMode=yes comes
 * first of all.
 */
export function sshArgv(target: SshTarget, script: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const remote = ['sh', '-c', script, 'cmmigrate'].map(shQuote).join(' ');
  return [...FIXED_OPTIONS, ...extraSshOptions(env), ...DEFAULT_OPTIONS, '--', target.destination, remote];
}

/** The ssh failure that `stderr` describes, or undefined when ssh itself got through. */
export function classifySshFailure(target: SshTarget, stderr: string): CmError | undefined {
  const where = `the ${target.side} host (ssh ${target.destination})`;
  const text = stderr.trim();
  const last = text.split('\n').filter(Boolean).pop() ?? '';
  const test = `ssh -o BatchMode=yes ${target.destination} true`;
  const details = { host: target.destination, side: target.side, ssh_error: last };
  if (/Connection refused/i.test(text)) {
    return new CmError('ssh.refused', `cannot reach ${where}: the connection to its ssh port was refused (${last})`, {
      hint: `check that sshd runs on that host and that the port is right (~/.ssh/config or ssh://user@host:port in the plan's ${target.side}.ssh), test with \`${test}\`, then run ${RERUN}`,
      details,
    });
  }
  if (/Permission denied|Too many authentication failures|no matching host key type|No supported authentication methods/i.test(text)) {
    return new CmError('ssh.auth_failed', `${where} refused the login: ${last}`, {
      hint: `cmmigrate runs ssh without prompts, so it needs a key that works as is: add yours to root's authorized_keys there (ssh-copy-id ${target.destination}) or load it into ssh-agent; test with \`${test}\``,
      details,
    });
  }
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No .* host key is known/i.test(text)) {
    return new CmError('ssh.host_key', `ssh does not know the host key of ${where}: ${last}`, {
      hint: `connect once by hand (ssh ${target.destination}) and check the host key fingerprint before you accept it, then run ${RERUN}`,
      details,
    });
  }
  if (/Could not resolve hostname|Name or service not known|Temporary failure in name resolution/i.test(text)) {
    return new CmError('ssh.unknown_host', `cannot resolve ${where}: ${last}`, {
      hint: `correct ${target.side}.ssh in the plan or the host name in ~/.ssh/config`,
      details,
    });
  }
  if (/timed out|No route to host|Network is unreachable|Connection reset|Connection closed by/i.test(text)) {
    return new CmError('ssh.unreachable', `cannot reach ${where}: ${last}`, {
      hint: `check the address and that no firewall drops ssh between this machine and that host; test with \`${test}\``,
      details,
    });
  }
  return undefined;
}

/**
 * Runs `script` on the host. Resolves with the remote exit code and output; rejects with
 * a CmError (`ssh.*`) when ssh itself failed: not installed, refused, login failed,
 * timed out.
 */
export async function runRemote(target: SshTarget, script: string, opts: RunRemoteOptions = {}): Promise<RemoteResult> {
  const env = opts.env ?? process.env;
  const argv = sshArgv(target, script, env);
  opts.onCommand?.(`ssh ${[...extraSshOptions(env), target.destination].join(' ')} sh -c '<${opts.label ?? 'script'}>'`);
  const timeoutMs = opts.timeoutMs ?? 120_000;
  let r: ChildResult;
  try {
    r = await runChild('ssh', argv, { env, input: opts.input ?? Buffer.alloc(0), timeoutMs, signal: opts.signal, killGraceMs: 5_000, maxOutputBytes: MAX_OUTPUT });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') {
      throw new CmError('ssh.not_installed', 'the ssh command is not installed on this machine', {
        hint: `install the OpenSSH client (apt-get install openssh-client), then run ${RERUN}`,
        cause: err,
      });
    }
    throw new CmError('ssh.failed', `cannot run ssh: ${err.message}`, { cause: err });
  }
  const details = { host: target.destination, side: target.side };
  if (r.aborted) {
    throw new CmError('step.interrupted', `ssh to the ${target.side} host (${target.destination}) was interrupted`, { hint: `run ${RERUN}`, exitCode: ExitCode.interrupted, details });
  }
  if (r.timedOut) {
    throw new CmError('ssh.timeout', `the ${target.side} host (ssh ${target.destination}) did not finish in ${Math.round(timeoutMs / 1000)} s`, {
      hint: `check the host and the network (\`ssh ${target.destination}\`), then run ${RERUN}`,
      details,
    });
  }
  const exit = r.code ?? (r.signal ? 128 : 1);
  if (exit === 255) {
    throw (
      classifySshFailure(target, r.stderr) ??
      new CmError('ssh.failed', `ssh to the ${target.side} host (${target.destination}) failed: ${r.stderr.trim().split('\n').pop() || 'exit 255'}`, {
        hint: `run \`ssh -o BatchMode=yes ${target.destination} true\` to see what ssh says, then run ${RERUN}`,
        details,
      })
    );
  }
  return { code: exit, stdout: r.stdout, stderr: r.stderr };
}
