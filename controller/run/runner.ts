/**
 * `cmmigrate run`: the six steps in order, each announced by its title, guarded by its own
 * check and recorded in the journal, so that a rerun after any failure (or a kill of the
 * controller) continues at the step that did not finish. Steps 1 and 2 run side by side.
 */
import * as path from 'node:path';
import { CmError, ExitCode } from '../../proto';
import { connectAgent } from '../agent-client';
import { hostOps } from '../host-ops';
import { interruptedError, isInterruption } from '../interrupt';
import { loadPlan } from '../plan';
import { formatDuration, type Reporter } from '../report';
import { writeReport } from '../move-report';
import { shQuote } from '../ssh';
import { hostLabel, requireRelayDir } from './actions';
import { askTerminal, runLogger, stepError, type RunContext, type RunOptions } from './context';
import { Journal, STEP_IDS, stepLabel, type StepId } from './journal';
import { bridgeEnd, bridgePlanLines, bridges, bridgeUp, perMinuteOf, recordDnsSwitch, runOrder } from './bridge-up';
import { checkAgents } from './preflight';
import { fullVerifyAfterMove } from './verify-after';
import { stepById, type Step } from './steps';
import { externalTlsPlan, externalTlsReminder } from './external-tls';

/** What must be done before a step may run. */
const REQUIRES: Record<StepId, StepId[]> = {
  preflight: [],
  '1': ['preflight'],
  '2': ['preflight'],
  '3': ['1', '2'],
  '4': ['3'],
  '5': ['4'],
  '6': ['5'],
};

function prerequisites(id: StepId, order: readonly StepId[]): Set<StepId> {
  // With the bridge, step 6 follows step 4 and step 5 follows step 6.
  const requires: Record<StepId, StepId[]> = bridges(order) ? { ...REQUIRES, '6': ['4'], '5': ['6'] } : REQUIRES;
  const out = new Set<StepId>();
  const add = (s: StepId): void => {
    for (const r of requires[s]) {
      out.add(r);
      add(r);
    }
  };
  add(id);
  return out;
}

/** The step each cmdeploy action belongs to (enable-mail is rollback's). */
const CMDEPLOY_STEP: Record<string, string> = { preconfigure: '2', 'disable-mail': '3', activate: '6', 'enable-mail': 'rollback' };

export interface RunResult {
  /** The steps this run performed (or, in a dry run, would perform). */
  ran: StepId[];
  complete: boolean;
  outageSeconds?: number;
  dnsSeconds?: number;
}

export { stepLabel };

/** Which steps this invocation runs, in order; refuses a selection whose prerequisites are not done. */
export function selectSteps(journal: Journal, opts: Pick<RunOptions, 'from' | 'only' | 'plan'>, rerun: string, order: readonly StepId[] = STEP_IDS): StepId[] {
  let chosen: StepId[];
  if (opts.only) chosen = [opts.only];
  else if (opts.from) chosen = order.slice(order.indexOf(opts.from));
  else chosen = order.filter((id) => !journal.isDone(id));
  if (chosen.length === 0) return chosen;
  // Bridged, step 5 (DNS) comes after step 6 and may still run.
  const afterSix = bridges(order) ? ['6', '5'] : ['6'];
  if (journal.isDone('6') && chosen.some((id) => !afterSix.includes(id))) {
    throw new CmError('step.already_migrated', `step 6 is done: the relay runs on the new host ${journal.data.new_host}, so the earlier steps must not run again`, {
      hint: `see what was done with cmmigrate status --plan ${shQuote(opts.plan)}; only --only 6 (the checks of the new host) can run again`,
      exitCode: ExitCode.precondition,
    });
  }
  const first = chosen[0];
  const missing = [...prerequisites(first, order)].filter((r) => !journal.isDone(r) && !chosen.includes(r));
  if (missing.length > 0) {
    const names = missing.sort((a, b) => order.indexOf(a) - order.indexOf(b)).map((m) => (m === 'preflight' ? 'preflight' : `step ${m}`));
    throw new CmError('step.out_of_order', `${first === 'preflight' ? 'preflight' : `step ${first}`} needs ${names.join(' and ')} done first`, {
      hint: `run ${rerun} without --from/--only: it continues at the first step not done`,
      exitCode: ExitCode.precondition,
    });
  }
  return chosen;
}

async function runStep(ctx: RunContext, step: Step): Promise<void> {
  const { journal, out } = ctx;
  const base = { step: step.id, label: stepLabel(step.id), title: step.title };
  if (ctx.signal?.aborted) throw interruptedError(`the run (before ${step.id === 'preflight' ? 'preflight' : `step ${step.id}`})`, ctx.rerun);
  out.step({ ...base, state: 'started' });
  journal.start(step.id);
  ctx.log.info({ step: step.id }, 'step started');
  try {
    const facts = (await step.run(ctx)) ?? {};
    journal.finish(step.id, facts);
    const rec = journal.step(step.id);
    ctx.log.info({ step: step.id, seconds: rec.seconds, bytes: rec.bytes }, 'step done');
    out.step({ ...base, state: 'done', seconds: rec.seconds, bytes: rec.bytes, moved: facts });
  } catch (err) {
    // After Ctrl-C, whatever the step saw last (a cancelled call, a killed cmdeploy) is an interruption.
    const cause = ctx.signal?.aborted && !isInterruption(err) ? interruptedError(step.id === 'preflight' ? 'preflight' : `step ${step.id} (${step.title})`, ctx.rerun, err) : err;
    const e = stepError(cause, step, step.side ? hostLabel(ctx.plan, step.side) : undefined, ctx.rerun);
    journal.fail(step.id, { code: e.code, message: e.message });
    ctx.log.error({ step: step.id, err: { code: e.code, message: e.message } }, 'step failed');
    out.step({ ...base, state: 'failed', code: e.code, message: e.message });
    throw e;
  }
}

/** Steps 1 and 2 side by side: both are recorded, the first failure is reported. */
async function runTogether(ctx: RunContext, steps: Step[]): Promise<void> {
  const results = await Promise.allSettled(steps.map((s) => runStep(ctx, s)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

async function printDryRun(ctx: RunContext, ids: StepId[], order: readonly StepId[]): Promise<void> {
  const { out } = ctx;
  out.item(`dry run: nothing changes; cmmigrate run --plan ${ctx.opts.plan} would do this:`);
  if (bridges(order)) out.item(`order (with the bridge): ${order.map((id) => (id === 'preflight' ? 'preflight' : id)).join(', ')}`);
  for (const id of order) {
    if (id === '5' && bridges(order) && ids.includes('5')) {
      const lines = await bridgePlanLines(ctx);
      out.item(`\nBridge (between step 6 and step 5):`);
      for (const line of lines) out.item(`  - ${line}`);
      ctx.emit('step', { step: 'bridge', title: 'Bridge the old host to the new host', state: 'would_run', actions: lines });
    }
    const step = stepById(id);
    const rec = ctx.journal.step(id);
    if (!ids.includes(id)) {
      out.item(`\n${stepLabel(id)}: ${step.title}: ${rec.state === 'done' ? `done ${rec.ended_at ?? ''}, skipped` : 'not selected'}`);
      continue;
    }
    // Step 2 carries the external TLS files first when chatmail.ini names them.
    const actions = [...(id === '2' ? await externalTlsPlan(ctx) : []), ...step.plan(ctx)];
    out.item(`\n${stepLabel(id)}: ${step.title}${rec.state !== 'pending' ? ` (${rec.state} before, runs again)` : ''}`);
    for (const line of actions) out.item(`  - ${line}`);
    ctx.emit('step', { step: id, title: step.title, state: 'would_run', actions });
  }
}

function printEnd(ctx: RunContext, result: RunResult): void {
  const { out, plan } = ctx;
  out.heading(`\nThe relay ${plan.mailDomain} now runs on the new host ${plan.new.host}.`);
  if (result.outageSeconds !== undefined && ctx.journal.data.bridge_up_at) {
    out.info(`Mail was off for ${formatDuration(result.outageSeconds)} (from the start of step 3 until the bridge on the old host was up; the DNS wait came after).`);
  } else if (result.outageSeconds !== undefined) {
    out.info(
      `Mail was off for ${formatDuration(result.outageSeconds)} (from the start of step 3 to the end of step 6)` +
        (result.dnsSeconds !== undefined ? `, of which ${formatDuration(result.dnsSeconds)} waiting for DNS.` : '.'),
    );
  }
  out.info(`Next:`);
  out.info(`  - raise the TTL of the A and AAAA records of ${plan.mailDomain} again (14400 to 86400 s)`);
  out.info(`  - remove the agents: cmmigrate uninstall-agent old --plan ${ctx.opts.plan}; cmmigrate uninstall-agent new --plan ${ctx.opts.plan}`);
  for (const line of externalTlsReminder(ctx)) out.info(`  - ${line}`);
  out.info(`  - keep the old host until you are sure; its mail stays disabled`);
}

function outageOf(journal: Journal): Pick<RunResult, 'outageSeconds' | 'dnsSeconds'> {
  const o = journal.data.outage;
  if (!o.started_at || !o.ended_at) return {};
  return { outageSeconds: (Date.parse(o.ended_at) - Date.parse(o.started_at)) / 1000, dnsSeconds: o.dns_seconds };
}

/** Every step is done: says so, and what comes after the move. */
function nothingLeft(ctx: RunContext): RunResult {
  const { out, journal } = ctx;
  out.info(`Every step is done (step 6 at ${journal.step('6').ended_at}).`);
  const result: RunResult = { ran: [], complete: true, ...outageOf(journal) };
  printEnd(ctx, result);
  ctx.emit('done', { complete: true, outage_seconds: result.outageSeconds ?? null, dns_seconds: result.dnsSeconds ?? null });
  return result;
}

/** --dry-run: the read-only checks first; the list of actions is printed whatever they find. */
async function dryRun(ctx: RunContext, selected: StepId[], order: readonly StepId[]): Promise<RunResult> {
  let problem: unknown;
  try {
    if (selected.includes('preflight')) {
      ctx.out.info('preflight checks (read only):');
      await stepById('preflight').run(ctx);
    } else await checkAgents(ctx);
  } catch (err) {
    problem = err;
  }
  await printDryRun(ctx, selected, order);
  ctx.emit('done', { dry_run: true, steps: selected, order });
  if (problem !== undefined) throw stepError(problem, stepById('preflight'), undefined, ctx.rerun);
  return { ran: selected, complete: false };
}

/** The selected steps, in order (1 and 2 side by side), then the end of the move or what comes next. */
async function perform(ctx: RunContext, selected: StepId[], order: readonly StepId[]): Promise<RunResult> {
  const { journal, out } = ctx;
  const bridged = bridges(order);
  // Every run first makes sure both agents answer, whatever step it continues at.
  if (!selected.includes('preflight')) await checkAgents(ctx);
  if (journal.data.order?.join() !== order.join()) journal.update((d) => (d.order = [...order]));
  for (const id of order) {
    if (id === '2' && selected.includes('1')) continue; // ran beside step 1
    if (!selected.includes(id)) continue;
    // Bridged: the bridge goes up between step 6 and step 5 (again on a rerun: a no-op when it runs).
    if (id === '5' && bridged && journal.isDone('6')) await bridgeUp(ctx);
    if (id === '1' && selected.includes('2')) await runTogether(ctx, [stepById('1'), stepById('2')]);
    else await runStep(ctx, stepById(id));
    if (id === '5' && bridged) recordDnsSwitch(ctx);
  }
  const complete = journal.isDone('6') && journal.isDone('5');
  const result: RunResult = { ran: selected, complete, ...outageOf(journal) };
  let bridgeView: Awaited<ReturnType<typeof bridgeEnd>>['view'];
  try {
    if (complete) {
      printEnd(ctx, result);
      if (bridged) bridgeView = (await bridgeEnd(ctx)).view;
      // Mail is back on: the full re-read runs outside the outage (Ctrl-C leaves it pending).
      if (journal.data.verify.full?.state !== 'done') await fullVerifyAfterMove(ctx);
    } else {
      const next = STEP_IDS.find((id) => !journal.isDone(id));
      if (next) out.info(`\nnext: ${ctx.rerun} (continues at ${next === 'preflight' ? 'preflight' : `step ${next}`})`);
    }
  } finally {
    // Also after a full verify that failed or was interrupted: the report shows it.
    writeRunReport(ctx, perMinuteOf(bridgeView));
  }
  ctx.emit('done', { complete, steps: selected, order, outage_seconds: result.outageSeconds ?? null, dns_seconds: result.dnsSeconds ?? null });
  ctx.log.info({ complete }, 'run ended');
  return result;
}

/** The move report at the end of a run: its path is printed; a failure to write it is only a warning. */
function writeRunReport(ctx: RunContext, bridgedPerMinute: { minute: number; count: number }[] | undefined): void {
  try {
    const file = writeReport(ctx.plan.stateDir, ctx.journal.data, bridgedPerMinute ? { bridged_per_minute: bridgedPerMinute } : {});
    ctx.out.info(`report: ${file} (cmmigrate report --plan ${shQuote(ctx.opts.plan)} writes it again)`);
    ctx.emit('report', { path: file });
  } catch (err) {
    ctx.out.warn(`cannot write the move report: ${(err as Error).message}`);
  }
}

/** Performs the selected steps; resolves when they are done, rejects with the failing step's error. */
export async function runMigration(opts: RunOptions, out: Reporter): Promise<RunResult> {
  const plan = await loadPlan(opts.plan);
  const rerun = `cmmigrate run --plan ${shQuote(opts.plan)}`;
  const relayDir = requireRelayDir(plan, shQuote(opts.plan), 'run');
  const ids = { mailDomain: plan.mailDomain, oldHost: plan.old.host, newHost: plan.new.host };
  const journal = opts.dryRun ? ((await Journal.read(plan.stateDir)) ?? Journal.inMemory(ids)) : await Journal.open(plan.stateDir, ids);
  const log = runLogger(opts.dryRun ? undefined : path.join(plan.stateDir, 'run.log'));
  // The order is fixed once step 5 or 6 has started: a rerun continues in it, whatever its options.
  const wantBridge = opts.bridge === true || plan.bridge?.enabled === true;
  const fixed = journal.step('5').attempts > 0 || journal.step('6').attempts > 0;
  const order = runOrder(fixed ? journal.data.order : undefined, wantBridge);
  if (fixed && journal.data.order && bridges(order) !== wantBridge) {
    out.info(`this move ${bridges(order) ? 'bridges (step 6 before step 5)' : 'follows the published order (step 5 before step 6)'} since it started step 5 or 6; it continues that way`);
  }
  const selected = selectSteps(journal, opts, rerun, order);

  const agents = { old: await connectAgent(plan, 'old'), new: await connectAgent(plan, 'new') };
  const ctx: RunContext = {
    plan,
    opts,
    out,
    log,
    journal,
    relayDir,
    agents,
    hosts: { old: hostOps(agents.old, opts.signal), new: hostOps(agents.new, opts.signal) },
    rerun,
    signal: opts.signal,
    emit(event, fields = {}) {
      out.event({ event, ...fields });
    },
    onCmdeploy({ action, ...c }) {
      if (opts.dryRun) return;
      const step = CMDEPLOY_STEP[action];
      journal.update((d) => (d.cmdeploy_calls = [...(d.cmdeploy_calls ?? []), { ...c, step }]));
    },
    warn(message) {
      out.warn(message);
      out.event({ event: 'warning', message });
      // Kept for the report; a dry run's journal is never written.
      const step = STEP_IDS.find((id) => journal.step(id).state === 'running');
      if (!opts.dryRun) journal.update((d) => (d.warnings = [...(d.warnings ?? []), { message, at: new Date().toISOString(), ...(step ? { step } : {}) }]));
    },
    async confirm(question) {
      if (opts.yes) return true;
      const ok = await (opts.confirm ?? ((q) => askTerminal(q, 'step 3 (disable mail on the old host)', rerun, opts.signal)))(question);
      log.info({ confirmed: ok }, 'confirmation');
      return ok;
    },
  };
  // Every event also goes to the log file, but not cmdeploy's lines and DNS polls, which are many.
  const unlisten = out.listen(({ event, ...fields }) => {
    if (event === 'warning') log.warn({ event }, String(fields.message));
    else if (event !== 'output' && event !== 'dns_poll') log.info({ event, ...fields }, String(event));
  });
  log.info({ argv: process.argv.slice(2), selected }, 'run started');
  try {
    if (selected.length === 0) return nothingLeft(ctx);
    if (opts.dryRun) return await dryRun(ctx, selected, order);
    return await perform(ctx, selected, order);
  } finally {
    unlisten();
    agents.old.client.close();
    agents.new.client.close();
    log.flush?.();
  }
}
