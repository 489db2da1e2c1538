/**
 * Uninstall, for `cmmigrate uninstall-agent old|new`: stops and disables the agent's unit, removes it,
 * /opt/cmmigrate (agent, keys, state) and, only if install-agent installed it, nodejs.
 * Safe to run again: what is gone already is skipped.
 */
import type { Plan } from '../plan';
import type { Reporter } from '../report';
import { parseLines, valueOf } from '../remote-facts';
import { remoteLayout, remotePrefix, UNIT_NAME } from '../remote-layout';
import { uninstallScript } from '../remote-scripts';
import { runRemote, type SshTarget } from '../ssh';
import type { Side } from './agents';
import { remoteFailure } from './remote-failure';

export interface UninstallAgentOptions {
  side: Side;
  /** Keep the packages install-agent installed (nodejs). */
  keepNodejs?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Ctrl-C: stops ssh (step.interrupted). */
  signal?: AbortSignal;
}

export interface UninstallAgentResult {
  side: Side;
  removedUnit: boolean;
  removedDir: boolean;
  removedPackages: string[];
  keptPackages: string[];
}

/** Removes the agent from one host over ssh; what was gone already is skipped. */
export async function runUninstallAgent(plan: Plan, opts: UninstallAgentOptions, out: Reporter): Promise<UninstallAgentResult> {
  const env = opts.env ?? process.env;
  const target: SshTarget = { side: opts.side, destination: plan[opts.side].ssh };
  const layout = remoteLayout(remotePrefix(env));
  const title = `uninstall-agent ${opts.side}`;
  out.info(`${title}: stopping and removing ${UNIT_NAME} and ${layout.dir} on ${target.destination}`);
  const r = await runRemote(target, uninstallScript(layout, { keepPackages: !!opts.keepNodejs }), {
    label: 'stop and remove script',
    env,
    timeoutMs: 10 * 60_000,
    signal: opts.signal,
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
