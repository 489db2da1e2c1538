/**
 * The relay project's own deploy tool, run from the operator's checkout of chatmail/relay
 * exactly as the manual procedure runs it: `scripts/cmdeploy run --ssh-host HOST
 * [--disable-mail]` with the checkout root as working directory, and `CMDEPLOY_STAGES`
 * exactly `install,configure` (step 2) or `activate` (step 6), or absent (step 3, and the
 * full deploy that re-enables mail on a rollback). Each run is echoed as `[$ ...]` before
 * it starts, its output reaches the caller line by line, and an exit status other than 0
 * is a CmError that names the host, the stage and the code.
 * What cmmigrate reads from the checkout lives beside this file: stages.ts (CMDEPLOY_STAGES
 * support), chatmail-ini.ts, git-head.ts.
 */
import { StringDecoder } from 'node:string_decoder';
import { constants as fsc, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CmError, ExitCode, hostProblem, RERUN } from '../../proto';
import { runChild } from '../../proto/child-run';
import { shQuote } from '../ssh';
import { chatmailIniLocation } from './ini-location';

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

/**
 * The environment of a cmdeploy run: `base` with CMDEPLOY_STAGES set exactly, or removed,
 * and CHATMAIL_INI set to `ini` when given (the file preflight read: cmdeploy.py reads
 * `$CHATMAIL_INI` before `./chatmail.ini`, so every call names it explicitly).
 */
export function cmdeployEnv(base: NodeJS.ProcessEnv, stages: string | undefined, ini?: string): NodeJS.ProcessEnv {
  const env = { ...base };
  delete env.CMDEPLOY_STAGES;
  if (stages !== undefined) env.CMDEPLOY_STAGES = stages;
  if (ini !== undefined) env.CHATMAIL_INI = ini;
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

/** Checks that `dir` holds an executable scripts/cmdeploy and the chatmail.ini `ini`. */
async function checkCheckout(cmd: CmdeployCommand, ini: string): Promise<void> {
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
      hint: `make it executable (chmod +x ${cmd.file}) or check out the relay again, then run ${RERUN}`,
      cause: err,
    });
  }
  try {
    await fsp.access(ini, fsc.R_OK);
  } catch (err) {
    throw new CmError('precondition.no_chatmail_ini', `${ini} does not exist: cmdeploy reads the relay's configuration from it`, {
      hint: `copy the chatmail.ini the relay was deployed with into ${dir}, then run ${RERUN}`,
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
  const base = opts.env ?? process.env;
  const ini = chatmailIniLocation(cmd.cwd, base).file;
  await checkCheckout(cmd, ini);
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

  const out = lineSplitter(keep('stdout'));
  const err = lineSplitter(keep('stderr'));
  const decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  let outcome: Awaited<ReturnType<typeof runChild>>;
  try {
    outcome = await runChild(cmd.file, cmd.args, {
      cwd: cmd.cwd,
      env: cmdeployEnv(base, cmd.stages, ini),
      signal: opts.signal,
      killGraceMs: 10_000,
      maxOutputBytes: 64 * 1024,
      onOutput: (chunk, stream) => (stream === 'stdout' ? out : err).push(decoders[stream].write(chunk)),
    });
  } catch (e) {
    throw new CmError('precondition.no_cmdeploy', `cannot start ${cmd.file}: ${(e as Error).message}`, {
      hint: `run scripts/initenv.sh in ${cmd.cwd} so that its cmdeploy works (try \`scripts/cmdeploy --help\` there), then run ${rerun} again`,
      cause: e,
      details,
    });
  }
  out.push(decoders.stdout.end());
  err.push(decoders.stderr.end());
  out.end();
  err.end();

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
