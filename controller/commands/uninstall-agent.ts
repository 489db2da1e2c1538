/**
 * `cmmigrate uninstall-agent old|new`: stops and disables the agent's unit, removes it,
 * /opt/cmmigrate (agent, keys, state) and, only if install-agent installed it, nodejs.
 * Safe to run again: what is gone already is skipped.
 */
import { Argument, Command } from 'commander';
import { createOutput, type Output } from '../output';
import { loadPlan } from '../plan';
import { parseLines, valueOf } from '../remote-facts';
import { remoteLayout, remotePrefix, UNIT_NAME } from '../remote-layout';
import { uninstallScript } from '../remote-scripts';
import { runRemote, type SshTarget } from '../ssh';
import type { Side } from './agents';
import { remoteFailure } from './install-agent';

export interface UninstallAgentOptions {
  plan: string;
  side: Side;
  /** Keep the packages install-agent installed (nodejs). */
  keepNodejs?: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface UninstallAgentResult {
  side: Side;
  removedUnit: boolean;
  removedDir: boolean;
  removedPackages: string[];
  keptPackages: string[];
}

export async function runUninstallAgent(opts: UninstallAgentOptions, out: Output): Promise<UninstallAgentResult> {
  const env = opts.env ?? process.env;
  const plan = await loadPlan(opts.plan);
  const target: SshTarget = { side: opts.side, destination: plan[opts.side].ssh };
  const layout = remoteLayout(remotePrefix(env));
  const title = `uninstall-agent ${opts.side}`;
  out.info(`${title}: stopping and removing ${UNIT_NAME} and ${layout.dir} on ${target.destination}`);
  const r = await runRemote(target, uninstallScript(layout, { keepPackages: !!opts.keepNodejs }), {
    label: 'stop and remove script',
    env,
    timeoutMs: 10 * 60_000,
    onCommand: (l) => out.info(`  [$ ${l}]`),
  });
  if (r.code !== 0) throw remoteFailure(target, 'removing the agent', r);
  const lines = parseLines(r.stdout);
  const list = (k: string): string[] => (valueOf(lines, k) ?? '').split(/\s+/).filter(Boolean);
  const result: UninstallAgentResult = {
    side: opts.side,
    removedUnit: valueOf(lines, 'had_unit') === 'yes',
    removedDir: valueOf(lines, 'removed_dir') !== undefined,
    removedPackages: list('removed_packages'),
    keptPackages: list('kept_packages'),
  };
  if (result.removedUnit) out.info(`  stopped, disabled and removed ${UNIT_NAME}`);
  if (result.removedDir) out.info(`  removed ${layout.dir} (the agent, its keys and its state)`);
  if (result.removedPackages.length) out.info(`  removed ${result.removedPackages.join(', ')} (installed by install-agent)`);
  const because = list('kept_because');
  if (result.keptPackages.length) {
    out.info(
      because.length
        ? `  kept ${result.keptPackages.join(', ')}: removing them would also remove ${because.join(', ')}, installed since`
        : `  kept ${result.keptPackages.join(', ')} (--keep-nodejs)`,
    );
  }
  if (!result.removedUnit && !result.removedDir) out.info(`${title}: nothing of cmmigrate was installed there`);
  else out.info(`${title}: done`);
  out.event({ event: 'uninstalled', side: opts.side, removed_unit: result.removedUnit, removed_dir: result.removedDir, removed_packages: result.removedPackages, kept_packages: result.keptPackages });
  return result;
}

export function uninstallAgentCommand(): Command {
  return new Command('uninstall-agent')
    .description('stop and remove the agent from the old or new host over ssh')
    .addArgument(new Argument('<side>', 'which host of the plan').choices(['old', 'new']))
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .option('--keep-nodejs', 'keep nodejs even if install-agent installed it')
    .option('--json', 'print one JSON result object on stdout')
    .addHelpText(
      'after',
      `
Stops and disables ${UNIT_NAME}, removes it and /opt/cmmigrate (the agent, its TLS keys
and its record of what it wrote), and purges the packages that install-agent installed
(Debian's nodejs), unless something installed since depends on them.

Example:
  cmmigrate uninstall-agent old --plan plan.toml`,
    )
    .action(async (side: Side, o: { plan: string; keepNodejs?: boolean; json?: boolean }) => {
      await runUninstallAgent({ plan: o.plan, side, keepNodejs: o.keepNodejs }, createOutput(!!o.json));
    });
}
