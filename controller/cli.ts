#!/usr/bin/env node
/**
 * cmmigrate: the controller that moves a chatmail relay to a new host. Each command lives
 * in controller/commands/; this is the one place that turns errors into text and exit codes.
 */
import { Command, CommanderError } from 'commander';
import { asCmError, ExitCode, SAME_COMMAND_AGAIN, withRerun } from '../proto/errors';
import type { CommandContext } from './command-context';
import { agentsCommand } from './commands/agents';
import { bridgeCommand } from './commands/bridge';
import { initCommand } from './commands/init';
import { reportCommand } from './commands/report';
import { rollbackCommand } from './commands/rollback';
import { runCommand } from './commands/run';
import { statusCommand } from './commands/status';
import { installAgentCommand } from './commands/install-agent';
import { syncCommand } from './commands/sync';
import { uninstallAgentCommand } from './commands/uninstall-agent';
import { verifyCommand } from './commands/verify';
import { interruptedError, isInterruption } from './interrupt';
import { createReporter, type Reporter } from './report';

const VERSION: string = (() => {
  try {
    return require('../../package.json').version as string;
  } catch {
    return '0.0.0';
  }
})();

const EXIT_CODES = `
Exit status:
  ${ExitCode.ok}    done
  ${ExitCode.failed}    failed (the message says what and where, and what to run next)
  ${ExitCode.usage}    bad usage: an option or the plan file is wrong
  ${ExitCode.precondition}    a precondition is not met (for example users missing on the new host)
  ${ExitCode.interrupted}  interrupted (Ctrl-C); run the same command again to continue`;

/** The whole command line; each command gets `ctx` (signal, reporter, exit status). */
export function buildProgram(ctx: CommandContext): Command {
  const program = new Command('cmmigrate')
    .description('Move a chatmail relay to a new host: two agents copy its state host to host over gRPC with mutual TLS, checked end to end.')
    .version(VERSION)
    .showHelpAfterError()
    .addHelpText(
      'after',
      `
Typical use:
  cmmigrate init --plan plan.toml --relay-dir ~/relay --old OLD_IP --new NEW_IP
  cmmigrate install-agent old --plan plan.toml
  cmmigrate install-agent new --plan plan.toml
  cmmigrate agents --plan plan.toml
  cmmigrate run --plan plan.toml --dry-run
  cmmigrate run --plan plan.toml            (all six steps; run it again to continue)
  cmmigrate status --plan plan.toml
  cmmigrate uninstall-agent old --plan plan.toml   (and new, when the move is done)

The steps one by one, by hand:
  cmmigrate sync --plan plan.toml --phase initial
  cmmigrate sync --plan plan.toml --phase final
  cmmigrate verify --plan plan.toml
${EXIT_CODES}`,
    );
  for (const cmd of [initCommand(ctx), installAgentCommand(ctx), agentsCommand(ctx), runCommand(ctx), statusCommand(ctx), rollbackCommand(ctx), syncCommand(ctx), verifyCommand(ctx), bridgeCommand(ctx), reportCommand(ctx), uninstallAgentCommand(ctx)]) {
    cmd.exitOverride();
    program.addCommand(cmd);
  }
  program.exitOverride();
  return program;
}

/**
 * grpc-js sends the dialled IP address as TLS ServerName, which Node flags (DEP0123) on
 * every connection. It is harmless here (certificates carry IP SANs): keep it off the
 * user's terminal and print other warnings as usual.
 */
function quietIpServernameWarning(): void {
  process.removeAllListeners('warning');
  process.on('warning', (w: Error & { code?: string }) => {
    if (w.code === 'DEP0123') return;
    process.stderr.write(`${w.name}: ${w.message}\n`);
  });
}

/**
 * The first Ctrl-C (SIGINT or SIGTERM) aborts `abort`: the operation stops what it runs
 * (cmdeploy, ssh, agent calls), the journal records the step as interrupted, and the exit
 * status is 130. A second one exits at once.
 */
function onInterrupt(abort: AbortController): void {
  const handler = (): void => {
    if (abort.signal.aborted) {
      process.stderr.write('\ninterrupted; run the same command again to continue\n');
      process.exit(ExitCode.interrupted);
    }
    process.stderr.write('\ninterrupted: stopping cleanly (Ctrl-C again to stop at once)\n');
    abort.abort();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/**
 * A reader that goes away (`cmmigrate --help | head`, a closed `tee`) ends the output, not
 * the command: a step in progress goes on to its end and the journal records it, and nothing
 * prints a stack trace about a broken pipe.
 */
function quietBrokenPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') return;
      throw err;
    });
  }
}

async function main(argv: string[]): Promise<void> {
  quietIpServernameWarning();
  quietBrokenPipe();
  const abort = new AbortController();
  let reporter: Reporter | undefined;
  let exitCode: number = ExitCode.ok;
  const ctx: CommandContext = {
    signal: abort.signal,
    reporter: (json) => (reporter ??= createReporter(json)),
    setExitCode: (code) => (exitCode = code),
  };
  onInterrupt(abort);
  try {
    await buildProgram(ctx).parseAsync(argv);
    process.exitCode = abort.signal.aborted ? ExitCode.interrupted : exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : ExitCode.usage;
      return;
    }
    const sub = argv[2] ?? '';
    // After Ctrl-C, what the command saw last (a cancelled call, a killed child) is the interruption.
    const e = abort.signal.aborted && !isInterruption(err) ? interruptedError('the command', undefined, err) : asCmError(err);
    process.exitCode = ctx.reporter(argv.includes('--json')).error(withRerun(e, SAME_COMMAND_AGAIN), sub);
  }
}

void main(process.argv);
