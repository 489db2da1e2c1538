/**
 * What every step of `cmmigrate run` works with: the plan, the journal, both agents and
 * their host operations, the reporter, the JSON events and the log file. Also
 * the one place that turns a step's failure into an error naming the step, the host and
 * the command to run next.
 */
import * as readline from 'node:readline';
import pino from 'pino';
import { asCmError, CmError, ExitCode, fillRerun } from '../../proto';
import { whenAborted } from '../interrupt';
import type { AgentHandle } from '../agent-client';
import type { Reporter } from '../report';
import type { ActionContext } from './actions';
import type { Journal, StepId } from './journal';

export interface RunOptions {
  /** The plan file as the operator gave it (for the commands we print). */
  plan: string;
  yes?: boolean;
  dryRun?: boolean;
  from?: StepId;
  only?: StepId;
  json?: boolean;
  /** How long step 5 waits for the DNS records; default 30 minutes. */
  dnsTimeoutSeconds?: number;
  /** Between two DNS polls; default 10 s. */
  dnsIntervalSeconds?: number;
  skipDnsWait?: boolean;
  /** Issue 14: step 6 before step 5, with the old host bridging the relay's ports to the new one in between. */
  bridge?: boolean;
  /** No catch-up passes after step 1's initial copy. */
  noCatchUp?: boolean;
  /** Catch-up passes repeat while a pass takes at least this long (and changes 1 % of the tree); default 10. */
  catchUpSeconds?: number;
  /** Do not run the full verify after step 6 (it can run later as cmmigrate verify). */
  noFullVerify?: boolean;
  /** Asks the operator; default: a y/N question on the terminal. */
  confirm?: (question: string) => Promise<boolean>;
  /** Aborted by Ctrl-C: the step under way stops and is recorded as interrupted. */
  signal?: AbortSignal;
}

/** A step's world; the shared actions (actions.ts) take it as their ActionContext. */
export interface RunContext extends ActionContext {
  opts: RunOptions;
  out: Reporter;
  log: pino.Logger;
  journal: Journal;
  agents: { old: AgentHandle; new: AgentHandle };
  /** The command that continues the run: `cmmigrate run --plan FILE`. */
  rerun: string;
  /** One JSON event on stdout (--json) and in the log file. */
  emit(event: string, fields?: Record<string, unknown>): void;
  /** A warning for people, as an event, and in the log. */
  warn(message: string): void;
  /** Asks before a step that changes what users see; true with --yes. */
  confirm(question: string): Promise<boolean>;
}

/** The run's log file: pino JSON lines, written synchronously so a kill loses nothing. */
export function runLogger(file: string | undefined): pino.Logger {
  if (!file) return pino({ enabled: false });
  return pino({ base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: file, sync: true, mkdir: true }));
}

/** A y/N question on the terminal; refuses (with how to say yes) when there is no terminal; Ctrl-C (`signal`) stops it. */
export async function askTerminal(question: string, what: string, rerun: string, signal?: AbortSignal): Promise<boolean> {
  if (!process.stdin.isTTY) {
    throw new CmError('step.confirmation_needed', `${what} needs your confirmation, and there is no terminal to ask on`, {
      hint: `run ${rerun} --yes to confirm in advance`,
      exitCode: ExitCode.precondition,
    });
  }
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  const stop = whenAborted(signal, `the question about ${what}`);
  try {
    const answer = await Promise.race([new Promise<string>((resolve) => rl.question(`${question} [y/N] `, resolve)), stop.promise]);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    stop.dispose();
    rl.close();
  }
}

/**
 * A step's failure as the operator should read it: which step, on which host, what went
 * wrong, and, last, the command that continues.
 */
export function stepError(err: unknown, step: { id: StepId; title: string }, host: string | undefined, rerun: string): CmError {
  const e = asCmError(err);
  const where = step.id === 'preflight' ? 'preflight' : `step ${step.id} (${step.title})`;
  const on = host && !e.message.includes(host) ? ` on ${host}` : '';
  const message = e.message.startsWith(where) ? e.message : `${where}${on}: ${e.message}`;
  let hint = e.hint === undefined ? `fix what is reported, then run ${rerun}` : fillRerun(e.hint, rerun);
  if (!hint.includes('cmmigrate ')) hint = `${hint}; then run ${rerun}`;
  return new CmError(e.code, message, { hint, details: { ...e.details, step: step.id, host }, exitCode: e.exitCode, cause: e });
}
