/**
 * `cmmigrate run`: the whole move in six steps (see controller/run/). This file only
 * parses the options and calls runMigration.
 */
import { Command, Option } from 'commander';
import { CmError, ExitCode } from '../../proto/errors';
import type { CommandContext } from '../command-context';
import type { StepId } from '../run/journal';
import { loadOps } from './load-ops';

function stepOption(flag: string) {
  return (v: string): StepId => {
    const id = v.replace(/^step\s*/i, '');
    // The journal (and its schema) loads only when the option is given.
    const { STEP_IDS } = loadOps();
    if (!(STEP_IDS as readonly string[]).includes(id)) {
      throw new CmError('usage.bad_option', `${flag} ${JSON.stringify(v)}: expected preflight or a step number from 1 to 6`);
    }
    return id as StepId;
  };
}

function seconds(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new CmError('usage.bad_option', `${flag} ${v}: expected a number of seconds greater than 0`);
    return n;
  };
}

function nonNegativeSeconds(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new CmError('usage.bad_option', `${flag} ${v}: expected a number of seconds, 0 or more`);
    return n;
  };
}

export const RUN_STEPS_HELP = `
The steps (each prints its title before it acts and is recorded in the journal, in the
plan's state dir; a rerun continues at the first step that is not done):
  preflight  both agents answer with the same version; the checkout honours
             CMDEPLOY_STAGES and its chatmail.ini names this mail_domain; free disk on
             the new host; warns on a DNS TTL above 300 s, a certificate expiring within
             30 days, or a checkout at another commit than the old host's
  1          initial sync of the mailboxes while the old relay still runs, then catch-up
             passes while each still takes 10 s and changes 1 % of the tree (--no-catch-up)
  2          CMDEPLOY_STAGES=install,configure scripts/cmdeploy run --ssh-host NEW, then
             postfix, dovecot and opendkim are stopped on the new host (1 and 2 run side by side)
  3          asks, then scripts/cmdeploy run --disable-mail --ssh-host OLD; checks that postfix
             and dovecot are inactive there and stops doveauth, chatmail-metadata, lastlogin,
             filtermail and chatmail-expire.timer
  4          final sync of every root, a quick verify (digests the passes recorded for
             unchanged files), postfix set-permissions, postsuper -s
  5          prints the A/AAAA records to set and waits until the zone's authoritative
             servers show them
  6          CMDEPLOY_STAGES=activate scripts/cmdeploy run --ssh-host NEW, restarts postfix,
             dovecot and opendkim, checks ports 25 465 587 993 443 and the certificate
  --bridge   (or bridge = true in the plan) step 6 runs before step 5; between them the
             old host's agent listens on the old addresses on the relay's ports (25 465 587
             143 993 443 80; nginx there is stopped) and passes each connection to the new
             host, so mail is back on before DNS moves. The bridge stays up after the run:
             cmmigrate bridge status|stop --plan FILE
  then       a full verify of both hosts, every file read, with mail back on (Ctrl-C
             leaves it pending: cmmigrate verify --plan FILE runs it later), and the
             move report (cmmigrate report --plan FILE writes it again)

Exit status:
  ${ExitCode.ok}    every selected step is done
  ${ExitCode.failed}    a step failed: the message names the step and the host; fix it and run again
  ${ExitCode.usage}    bad usage: an option or the plan file is wrong
  ${ExitCode.precondition}    a precondition is not met (preflight, a step out of order, no confirmation)
  ${ExitCode.interrupted}  interrupted (Ctrl-C): run the same command again to continue

Examples:
  cmmigrate run --plan plan.toml --dry-run
  cmmigrate run --plan plan.toml
  cmmigrate run --plan plan.toml --yes --json > events.jsonl
  cmmigrate run --plan plan.toml --only 6`;

/** The `run` command. */
export function runCommand(ctx: CommandContext): Command {
  return new Command('run')
    .summary('move the relay: all six steps, resumable')
    .description(
      "Move the relay from the old host to the new one: the relay project's six-step procedure, " +
        'with every step checked and recorded, so that running the same command again after a ' +
        'failure continues where it stopped. The plan must name your relay checkout (relay_dir).',
    )
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .option('--yes', 'do not ask before disabling mail on the old host (step 3)')
    .option('--dry-run', 'print every action and command the run would perform, run the read-only preflight checks, change nothing')
    .addOption(new Option('--from <step>', 'start at this step (preflight, 1-6), running it and those after it again even if done').argParser(stepOption('--from')).conflicts('only'))
    .addOption(new Option('--only <step>', 'run just this step (preflight, 1-6)').argParser(stepOption('--only')))
    .option('--json', 'print one JSON event per line on stdout; only warnings and errors go to stderr')
    .option('--dns-timeout <seconds>', 'how long step 5 waits for the DNS records (default 1800)', seconds('--dns-timeout'))
    .option('--dns-interval <seconds>', 'time between two DNS polls in step 5 (default 5)', seconds('--dns-interval'))
    .option('--skip-dns-wait', 'do not wait for the DNS records in step 5 (when you know they are set)')
    .option('--no-catch-up', 'no catch-up passes after the initial copy of step 1')
    .option('--catch-up-until <seconds>', 'catch-up passes repeat while a pass takes at least this long and changes 1 % of the tree (default 10; 0: until a pass changes less than 1 %)', nonNegativeSeconds('--catch-up-until'))
    .option('--bridge', "activate the new host before the DNS switch and bridge the old host's relay ports to it meanwhile (step 6 before step 5)")
    .option('--no-full-verify', 'after step 6, leave the full verify of both hosts for later (cmmigrate verify --plan FILE)')
    .addHelpText('after', RUN_STEPS_HELP)
    .action(async (o: { plan: string; yes?: boolean; dryRun?: boolean; from?: StepId; only?: StepId; json?: boolean; dnsTimeout?: number; dnsInterval?: number; skipDnsWait?: boolean; bridge?: boolean; catchUp: boolean; catchUpUntil?: number; fullVerify: boolean }) => {
      const out = ctx.reporter(!!o.json);
      const { runMigration } = loadOps();
      await runMigration(
        {
          plan: o.plan,
          yes: o.yes,
          dryRun: o.dryRun,
          from: o.from,
          only: o.only,
          json: o.json,
          dnsTimeoutSeconds: o.dnsTimeout,
          dnsIntervalSeconds: o.dnsInterval,
          skipDnsWait: o.skipDnsWait,
          bridge: o.bridge,
          noCatchUp: !o.catchUp,
          catchUpSeconds: o.catchUpUntil,
          noFullVerify: !o.fullVerify,
          signal: ctx.signal,
        },
        out,
      );
    });
}
