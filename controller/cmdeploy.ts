/**
 * The relay project's own deploy tool, run from the operator's checkout of chatmail/relay
 * exactly as the manual procedure runs it: `scripts/cmdeploy run --ssh-host HOST
 * [--disable-mail]` with the checkout root as working directory, and `CMDEPLOY_STAGES`
 * exactly `install,configure` (step 2) or `activate` (step 6), or absent (step 3, and the
 * full deploy that re-enables mail on a rollback). Each run is echoed as `[$ ...]` before
 * it starts, its output reaches the caller line by line, and an exit status other than 0
 * is a CmError that names the host, the stage and the code.
 *
 * Also what cmmigrate reads from the checkout: whether its cmdeploy honours
 * CMDEPLOY_STAGES (relay 1.8.0 and later), the release it is at, and chatmail.ini.
 */
import { spawn } from 'node:child_process';
import { constants as fsc, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CmError, ExitCode, hostProblem } from '../proto';
import { shQuote } from './ssh';

/** The cmdeploy runs of a migration. */
export type CmdeployAction = 'preconfigure' | 'disable-mail' | 'activate' | 'enable-mail';

interface ActionSpec {
  /** CMDEPLOY_STAGES, or undefined: removed from the environment (a full deploy). */
  stages?: 'install,configure' | 'activate';
  disableMail: boolean;
  /** For messages: what runs, with its stages. */
  what: string;
}

const ACTIONS: Record<CmdeployAction, ActionSpec> = {
  preconfigure: { stages: 'install,configure', disableMail: false, what: 'cmdeploy with CMDEPLOY_STAGES=install,configure' },
  'disable-mail': { disableMail: true, what: 'cmdeploy --disable-mail (a full deploy, CMDEPLOY_STAGES unset)' },
  activate: { stages: 'activate', disableMail: false, what: 'cmdeploy with CMDEPLOY_STAGES=activate' },
  'enable-mail': { disableMail: false, what: 'cmdeploy (a full deploy, CMDEPLOY_STAGES unset)' },
};

/** The CMDEPLOY_STAGES value of an action, or undefined when the variable must be absent. */
export function stagesOf(action: CmdeployAction): string | undefined {
  return ACTIONS[action].stages;
}

export interface CmdeployCommand {
  action: CmdeployAction;
  /** The host given as `--ssh-host` (IPv6 without brackets). */
  sshHost: string;
  /** Absolute path of `DIR/scripts/cmdeploy`. */
  file: string;
  args: string[];
  /** The checkout root: cmdeploy reads chatmail.ini from its working directory. */
  cwd: string;
  /** CMDEPLOY_STAGES as passed; undefined means removed from the environment. */
  stages: string | undefined;
  /** As a person would type it in the checkout: `CMDEPLOY_STAGES=activate scripts/cmdeploy run --ssh-host H`. */
  display: string;
}

/** The exact command line of one action; checks the host, runs nothing. */
export function cmdeployCommand(relayDir: string, sshHost: string, action: CmdeployAction): CmdeployCommand {
  const spec = ACTIONS[action];
  const bare = sshHost.replace(/^\[(.*)\]$/, '$1');
  const why = hostProblem(bare);
  if (why) {
    throw new CmError('usage.bad_option', `cannot run cmdeploy for host ${JSON.stringify(sshHost)}: ${why}`, {
      hint: 'the plan\'s old.host and new.host must be IP addresses or host names',
    });
  }
  const args = ['run', '--ssh-host', bare, ...(spec.disableMail ? ['--disable-mail'] : [])];
  const cwd = path.resolve(relayDir);
  const display = [...(spec.stages ? [`CMDEPLOY_STAGES=${spec.stages}`] : []), 'scripts/cmdeploy', ...args].map(shQuote).join(' ');
  return { action, sshHost: bare, file: path.join(cwd, 'scripts', 'cmdeploy'), args, cwd, stages: spec.stages, display };
}

/** The environment of a cmdeploy run: `base` with CMDEPLOY_STAGES set exactly, or removed. */
export function cmdeployEnv(base: NodeJS.ProcessEnv, stages: string | undefined): NodeJS.ProcessEnv {
  const env = { ...base };
  delete env.CMDEPLOY_STAGES;
  if (stages !== undefined) env.CMDEPLOY_STAGES = stages;
  // cmdeploy and the pyinfra it starts are Python: on a pipe their output would arrive in
  // 8 KiB blocks, stdout and stderr out of order, instead of line by line.
  env.PYTHONUNBUFFERED ??= '1';
  return env;
}

export interface RunCmdeployOptions {
  /** The operator's chatmail/relay checkout. */
  relayDir: string;
  /** The host to deploy to, given to cmdeploy as `--ssh-host`. */
  sshHost: string;
  action: CmdeployAction;
  /** Which host of the plan, for messages. */
  side?: 'old' | 'new';
  /** Check the checkout and return the command, but run nothing. */
  dryRun?: boolean;
  /** Receives the whole `[$ ...]` line just before cmdeploy starts. */
  echo?: (line: string) => void;
  /** Each line cmdeploy writes, as it comes. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** The environment to start from; default process.env. CMDEPLOY_STAGES in it is replaced or removed. */
  env?: NodeJS.ProcessEnv;
  /** Aborting it stops cmdeploy (SIGTERM, then SIGKILL after 10 s). */
  signal?: AbortSignal;
  /** The command that continues after a fix, for the hint; default "the same command". */
  rerun?: string;
}

export interface CmdeployResult {
  command: CmdeployCommand;
  /** False in a dry run. */
  ran: boolean;
  /** 0 after a run (anything else is thrown); undefined in a dry run. */
  exitCode?: number;
  seconds: number;
}

/** How many of the last output lines a failure keeps in its details. */
const TAIL_LINES = 20;
/** A line longer than this is passed on in pieces. */
const MAX_LINE = 64 * 1024;

/** Calls `emit` for each complete line of a text stream; `end()` flushes the last one. */
function lineSplitter(emit: (line: string) => void): { push(chunk: string): void; end(): void } {
  let buf = '';
  // A carriage return rewrites the line on a terminal: keep what the terminal would show.
  const out = (line: string): void => emit(line.replace(/\r$/, '').replace(/^.*\r/s, ''));
  return {
    push(chunk) {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        out(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      while (buf.length > MAX_LINE) {
        out(buf.slice(0, MAX_LINE));
        buf = buf.slice(MAX_LINE);
      }
    },
    end() {
      if (buf !== '') out(buf);
      buf = '';
    },
  };
}

/** Checks that `dir` holds an executable scripts/cmdeploy and a chatmail.ini. */
async function checkCheckout(cmd: CmdeployCommand): Promise<void> {
  const dir = cmd.cwd;
  const hint = `give the directory of your chatmail/relay checkout (the one you deploy the relay from, with chatmail.ini and scripts/initenv.sh run once) as --relay-dir`;
  const st = await fsp.stat(cmd.file).catch((err: unknown) => {
    throw new CmError('precondition.no_cmdeploy', `${cmd.file} does not exist: ${dir} is not a chatmail/relay checkout`, { hint, cause: err });
  });
  if (!st.isFile()) throw new CmError('precondition.no_cmdeploy', `${cmd.file} is not a file: ${dir} is not a chatmail/relay checkout`, { hint });
  try {
    await fsp.access(cmd.file, fsc.X_OK);
  } catch (err) {
    throw new CmError('precondition.no_cmdeploy', `${cmd.file} is not executable`, {
      hint: `make it executable (chmod +x ${cmd.file}) or check out the relay again, then run the same command again`,
      cause: err,
    });
  }
  try {
    await fsp.access(path.join(dir, 'chatmail.ini'), fsc.R_OK);
  } catch (err) {
    throw new CmError('precondition.no_chatmail_ini', `${path.join(dir, 'chatmail.ini')} does not exist: cmdeploy reads the relay's configuration from it`, {
      hint: `copy the chatmail.ini the relay was deployed with into ${dir}, then run the same command again`,
      cause: err,
    });
  }
}

function failureHint(action: CmdeployAction, host: string, rerun: string): string {
  if (action === 'disable-mail') {
    return `cmdeploy stops postfix and dovecot only at the end of its deploy, so mail may still run on ${host}: read cmdeploy's output above, fix what it reports, then run ${rerun} again`;
  }
  return `read cmdeploy's output above, fix what it reports (a cmdeploy run is safe to repeat), then run ${rerun} again`;
}

/**
 * Runs one action of cmdeploy to its end. Resolves when it exited 0; rejects with
 * `step.cmdeploy_failed` on any other exit, `precondition.*` when the checkout is not
 * usable, `step.interrupted` when `signal` aborted it. A dry run only checks the checkout.
 */
export async function runCmdeploy(opts: RunCmdeployOptions): Promise<CmdeployResult> {
  const started = Date.now();
  const cmd = cmdeployCommand(opts.relayDir, opts.sshHost, opts.action);
  await checkCheckout(cmd);
  if (opts.dryRun) return { command: cmd, ran: false, seconds: 0 };

  const spec = ACTIONS[opts.action];
  const host = `${opts.side ? `the ${opts.side} host ` : ''}${cmd.sshHost}`;
  const rerun = opts.rerun ?? 'the same command';
  const details = { host: cmd.sshHost, side: opts.side, action: opts.action, stages: cmd.stages ?? null, command: cmd.display, cwd: cmd.cwd };
  const interrupted = (): CmError =>
    new CmError('step.interrupted', `${spec.what} for ${host} was interrupted`, {
      hint: `run ${rerun} again; cmdeploy runs are safe to repeat`,
      exitCode: ExitCode.interrupted,
      details,
    });
  if (opts.signal?.aborted) throw interrupted();

  opts.echo?.(`[$ ${cmd.display}]`);
  const tail: string[] = [];
  const keep = (stream: 'stdout' | 'stderr') => (line: string): void => {
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
    opts.onLine?.(line, stream);
  };

  const outcome = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    const child = spawn(cmd.file, cmd.args, { cwd: cmd.cwd, env: cmdeployEnv(opts.env ?? process.env, cmd.stages), stdio: ['ignore', 'pipe', 'pipe'] });
    const out = lineSplitter(keep('stdout'));
    const err = lineSplitter(keep('stderr'));
    child.stdout.setEncoding('utf8').on('data', (d: string) => out.push(d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => err.push(d));
    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (e: NodeJS.ErrnoException) => {
      opts.signal?.removeEventListener('abort', onAbort);
      reject(
        new CmError('precondition.no_cmdeploy', `cannot start ${cmd.file}: ${e.message}`, {
          hint: `run scripts/initenv.sh in ${cmd.cwd} so that its cmdeploy works (try \`scripts/cmdeploy --help\` there), then run ${rerun} again`,
          cause: e,
          details,
        }),
      );
    });
    child.on('close', (code, signal) => {
      opts.signal?.removeEventListener('abort', onAbort);
      if (killTimer) clearTimeout(killTimer);
      out.end();
      err.end();
      resolve({ code, signal });
    });
  });

  if (opts.signal?.aborted) throw interrupted();
  if (outcome.code !== 0) {
    const how = outcome.code === null ? `was killed by ${outcome.signal}` : `failed with exit code ${outcome.code}`;
    throw new CmError('step.cmdeploy_failed', `${spec.what} for ${host} ${how}`, {
      hint: failureHint(opts.action, host, rerun),
      details: { ...details, exit_code: outcome.code, signal: outcome.signal, output_tail: tail },
    });
  }
  return { command: cmd, ran: true, exitCode: 0, seconds: (Date.now() - started) / 1000 };
}

// ---------------------------------------------------------------------------------------
// What the checkout is

/** The first relay release whose cmdeploy honours CMDEPLOY_STAGES. */
export const STAGES_SINCE = '1.8.0';

export interface StageSupport {
  supported: boolean;
  /** Where the checkout's cmdeploy reads CMDEPLOY_STAGES (path relative to the checkout). */
  evidence?: { file: string; line: number; text: string };
  /** The newest release CHANGELOG.md names, when it can be read. */
  version?: string;
  /** CHANGELOG.md lists changes above that release (a checkout between releases). */
  unreleasedChanges?: boolean;
  /** Why stages are not supported, in words. */
  reason?: string;
}

/** The cmdeploy package inside a checkout. */
const CMDEPLOY_SRC = path.join('cmdeploy', 'src', 'cmdeploy');

/**
 * The relay reads the variable in its deploy code, as a quoted literal:
 * cmdeploy/src/cmdeploy/basedeploy.py, `Deployment.perform_stages`:
 *     stages = os.getenv("CMDEPLOY_STAGES", default_stages).split(",")
 * and, in the first releases with stages, cmdeploy/src/cmdeploy/deployer.py, `Deployer.__init__`:
 *     self.stages = os.getenv("CMDEPLOY_STAGES", default_stages).split(",")
 * A checkout whose cmdeploy sources hold no such literal ignores the variable.
 */
const STAGES_READ_RE = /(?:getenv|environ\.get|environ)\s*[([]\s*(["'])CMDEPLOY_STAGES\1/;

/** Python files of the cmdeploy package, sorted, without its tests. */
async function pythonSources(root: string, rel = ''): Promise<string[]> {
  const entries = await fsp.readdir(path.join(root, rel), { withFileTypes: true });
  const out: string[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const p = path.join(rel, e.name);
    if (e.isDirectory() && e.name !== 'tests' && e.name !== '__pycache__') out.push(...(await pythonSources(root, p)));
    else if (e.isFile() && e.name.endsWith('.py')) out.push(p);
  }
  return out;
}

/** Compares dotted version numbers: negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The newest release in the checkout's CHANGELOG.md (`## 1.7.0 2025-...`), if any. */
export async function readCheckoutVersion(relayDir: string): Promise<{ version: string; unreleasedChanges: boolean } | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(relayDir, 'CHANGELOG.md'), 'utf8');
  } catch {
    return undefined;
  }
  let headingsBefore = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('## ')) continue;
    const m = /^##\s+v?(\d+\.\d+(?:\.\d+)?)\b/.exec(line);
    if (m) return { version: m[1], unreleasedChanges: headingsBefore > 0 };
    headingsBefore++; // "## untagged", "## unreleased"
  }
  return undefined;
}

/**
 * Whether the checkout's cmdeploy honours CMDEPLOY_STAGES. Decided by its source (see
 * STAGES_READ_RE); the release from CHANGELOG.md is reported beside it, for messages.
 * Rejects with `precondition.not_relay_checkout` when `relayDir` has no cmdeploy sources.
 */
export async function detectStageSupport(relayDir: string): Promise<StageSupport> {
  const dir = path.resolve(relayDir);
  const src = path.join(dir, CMDEPLOY_SRC);
  let files: string[];
  try {
    files = await pythonSources(src);
  } catch (err) {
    throw new CmError('precondition.not_relay_checkout', `${dir} is not a chatmail/relay checkout: it has no ${CMDEPLOY_SRC}/`, {
      hint: 'give the directory of your chatmail/relay checkout as --relay-dir',
      cause: err,
    });
  }
  const release = await readCheckoutVersion(dir);
  const base = { version: release?.version, unreleasedChanges: release?.unreleasedChanges };
  for (const f of files) {
    const text = await fsp.readFile(path.join(src, f), 'utf8');
    const lines = text.split('\n');
    const i = lines.findIndex((l) => STAGES_READ_RE.test(l) && !l.trimStart().startsWith('#'));
    if (i >= 0) {
      return { supported: true, evidence: { file: path.join(CMDEPLOY_SRC, f), line: i + 1, text: lines[i].trim() }, ...base };
    }
  }
  const at = release ? `the checkout is at relay ${release.version}${release.unreleasedChanges ? ' with later changes' : ''}, and ` : '';
  return {
    supported: false,
    ...base,
    reason: `${at}its cmdeploy (${CMDEPLOY_SRC}/) never reads CMDEPLOY_STAGES: it would run a full deploy and switch the new host on before the final sync`,
  };
}

/** Like detectStageSupport, but a checkout without stages is a `precondition.no_cmdeploy_stages` error. */
export async function requireStageSupport(relayDir: string): Promise<StageSupport> {
  const s = await detectStageSupport(relayDir);
  if (!s.supported) {
    throw new CmError('precondition.no_cmdeploy_stages', `the relay checkout ${path.resolve(relayDir)} does not support CMDEPLOY_STAGES: ${s.reason}`, {
      hint: `update the checkout to relay ${STAGES_SINCE} or later (git pull, then scripts/initenv.sh), deploy the old host with it once, then run the same command again`,
      details: { version: s.version ?? null },
    });
  }
  return s;
}

// ---------------------------------------------------------------------------------------
// chatmail.ini

export interface ChatmailIni {
  file: string;
  mailDomain: string;
  /** The `mailboxes_dir` key as written, if it is. */
  mailboxesDirKey?: string;
  /** Where the address directories live: the key, or chatmaild's default `/home/vmail/mail/<mail_domain>`. */
  mailboxesDir: string;
  /**
   * The directory the agents carry (the plan's `relay.mailboxes_dir`): the parent of
   * `mailboxesDir` when that ends in `/<mail_domain>`, as by default (`/home/vmail/mail`).
   */
  planMailboxesDir: string;
  /** Every key of the [params] section. */
  params: Record<string, string>;
}

/**
 * Parses INI text as the relay's chatmaild does (iniconfig): `[section]` lines,
 * `name = value` (split at the first `=`), whole-line comments with `#` or `;`, indented
 * continuation lines. Returns the sections' keys.
 */
export function parseIni(text: string, file: string): Record<string, Record<string, string>> {
  const sections: Record<string, Record<string, string>> = {};
  let section: Record<string, string> | undefined;
  let last: string | undefined;
  const bad = (n: number, why: string): CmError =>
    new CmError('precondition.chatmail_ini', `${file}, line ${n}: ${why}`, { hint: `correct line ${n} of ${file}`, details: { file, line: n } });
  text.split('\n').forEach((raw, i) => {
    const n = i + 1;
    const line = raw.replace(/\r$/, '');
    const t = line.trim();
    if (t === '' || t.startsWith('#') || t.startsWith(';')) return;
    if (/^\s/.test(line)) {
      if (!section || last === undefined) throw bad(n, 'an indented line continues no value');
      section[last] += `\n${t}`;
      return;
    }
    if (t.startsWith('[')) {
      const m = /^\[([^\]]+)\]/.exec(t);
      if (!m) throw bad(n, `unexpected line ${JSON.stringify(t)}`);
      section = sections[m[1]] ??= {};
      last = undefined;
      return;
    }
    const eq = t.indexOf('=');
    if (eq < 0) throw bad(n, `unexpected line ${JSON.stringify(t)}: expected name = value`);
    if (!section) throw bad(n, 'a value before the first [section]');
    const name = t.slice(0, eq).trim();
    if (Object.prototype.hasOwnProperty.call(section, name)) throw bad(n, `${name} is set twice`);
    section[name] = t.slice(eq + 1).trim();
    last = name;
  });
  return sections;
}

/** Reads `DIR/chatmail.ini`; undefined when there is none. */
export async function readChatmailIni(relayDir: string): Promise<ChatmailIni | undefined> {
  const file = path.join(path.resolve(relayDir), 'chatmail.ini');
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CmError('precondition.chatmail_ini', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  const params = parseIni(text, file).params;
  const mailDomain = params?.mail_domain?.trim();
  if (!params || !mailDomain) {
    throw new CmError('precondition.chatmail_ini', `${file} has no mail_domain in a [params] section`, {
      hint: `chatmail.ini must be the file the relay was deployed with; its [params] section names mail_domain`,
      details: { file },
    });
  }
  const key = params.mailboxes_dir?.trim() || undefined;
  const mailboxesDir = path.posix.normalize(key ?? `/home/vmail/mail/${mailDomain}`).replace(/(.)\/$/, '$1');
  const planMailboxesDir = path.posix.basename(mailboxesDir) === mailDomain ? path.posix.dirname(mailboxesDir) : mailboxesDir;
  return { file, mailDomain, mailboxesDirKey: key, mailboxesDir, planMailboxesDir, params };
}

// ---------------------------------------------------------------------------------------
// Which commit the checkout is at

/** The commit the checkout's HEAD points at, read from its .git without running git; undefined when unknown. */
export async function checkoutCommit(relayDir: string): Promise<string | undefined> {
  let gitDir = path.join(path.resolve(relayDir), '.git');
  try {
    const st = await fsp.stat(gitDir);
    if (st.isFile()) {
      // A worktree or submodule: ".git" is a file that names the real directory.
      const m = /^gitdir:\s*(.+)$/m.exec(await fsp.readFile(gitDir, 'utf8'));
      if (!m) return undefined;
      gitDir = path.resolve(path.resolve(relayDir), m[1].trim());
    }
    const head = (await fsp.readFile(path.join(gitDir, 'HEAD'), 'utf8')).trim();
    if (/^[0-9a-f]{40,64}$/.test(head)) return head;
    const ref = /^ref:\s*(\S+)$/.exec(head)?.[1];
    if (!ref) return undefined;
    const loose = await fsp.readFile(path.join(gitDir, ref), 'utf8').catch(() => undefined);
    if (loose) return loose.trim();
    // A worktree keeps its refs in the common directory.
    const common = (await fsp.readFile(path.join(gitDir, 'commondir'), 'utf8').catch(() => undefined))?.trim();
    const refDir = common ? path.resolve(gitDir, common) : gitDir;
    const looseCommon = await fsp.readFile(path.join(refDir, ref), 'utf8').catch(() => undefined);
    if (looseCommon) return looseCommon.trim();
    const packed = await fsp.readFile(path.join(refDir, 'packed-refs'), 'utf8').catch(() => '');
    return packed.split('\n').map((l) => l.split(' ')).find((p) => p[1] === ref)?.[0];
  } catch {
    return undefined;
  }
}

/**
 * Compares the old host's /etc/chatmail-version (the commit it was deployed from, then the
 * `git diff` of that checkout) with the checkout. Returns a warning, or undefined when they match.
 */
export function chatmailVersionWarning(hostFile: string | undefined, checkout: string | undefined, host: string): string | undefined {
  if (hostFile === undefined) return undefined;
  const deployed = /\b[0-9a-f]{40}\b/.exec(hostFile)?.[0];
  if (!deployed) return `${host}: /etc/chatmail-version names no commit; cannot tell whether your checkout is the one the relay was deployed from`;
  if (!checkout) return `${host} was deployed from commit ${deployed}; cannot read which commit your checkout is at`;
  if (deployed !== checkout) {
    return `${host} was deployed from commit ${deployed}, but your checkout is at ${checkout}: step 2 deploys the checkout's version to the new host (check out ${deployed.slice(0, 12)} if you want the same one)`;
  }
  const lines = hostFile.split('\n').filter((l) => l.trim() !== '');
  if (lines.length > 1) return `${host} was deployed from commit ${deployed} with local changes (its /etc/chatmail-version carries a diff): make sure your checkout has them too`;
  return undefined;
}
