/**
 * `run --bridge` (issue 14): the order of the steps (6 before 5), and between them the
 * bridge on the old host: the old host's units that still hold a relay port stop, the old
 * agent listens on the old addresses and passes each connection to the new host. The
 * outage ends when the bridge is up; `run` leaves it up and says when stopping it is safe.
 */
import { bridgeStatusOn, startBridgeOn, type BridgeView } from '../bridge-client';
import { queryRecords } from '../dns';
import { bridgeSpec, stopAdvice, type StopAdvice } from '../ops/bridge';
import { formatDuration } from '../report';
import { shQuote } from '../ssh';
import { hostLabel, stopUnits } from './actions';
import type { RunContext } from './context';
import { STEP_IDS, type StepId } from './journal';
import { nameServers } from './preflight';

/** The published order; with the bridge, step 6 (activate) runs before step 5 (DNS). */
export const BRIDGE_ORDER: readonly StepId[] = ['preflight', '1', '2', '3', '4', '6', '5'];

/**
 * Old host units that may hold one of the relay's ports once mail is off (step 3 stops
 * postfix and dovecot only): nginx serves 443 and 80 (upstream
 * cmdeploy/src/cmdeploy/nginx/nginx.conf.j2); postfix and dovecot are listed in case a
 * rerun finds them started again.
 */
export const PORT_HOLDERS = ['nginx', 'postfix', 'dovecot'] as const;

/**
 * The order this run follows: the journal's, once recorded (a rerun continues in the order
 * it started with, whatever its options), else the one the options ask for.
 */
export function runOrder(recorded: string[] | undefined, bridge: boolean): StepId[] {
  if (recorded && recorded.length === STEP_IDS.length && STEP_IDS.every((id) => recorded.includes(id))) return recorded as StepId[];
  return bridge ? [...BRIDGE_ORDER] : [...STEP_IDS];
}

/** Whether the order bridges (6 before 5). */
export const bridges = (order: readonly StepId[]): boolean => order.indexOf('6') < order.indexOf('5');

/** --dry-run: what happens between step 6 and step 5. */
export async function bridgePlanLines(ctx: RunContext): Promise<string[]> {
  let what: string;
  try {
    const s = await bridgeSpec(ctx.plan);
    what = `listen on ${s.listen.join(', ')} ports ${s.ports?.join(' ') ?? '25 80 143 443 465 587 993'} and pass each connection to the same port of ${s.target}`;
  } catch (err) {
    what = `cannot bridge: ${(err as Error).message}`;
  }
  return [`stop ${PORT_HOLDERS.join(', ')} on the old host where they still run (they hold relay ports)`, `start the bridge on the old host's agent: ${what}`, 'mail is back on for every client once the bridge is up, before DNS moves'];
}

async function oldTtl(ctx: RunContext): Promise<number | undefined> {
  try {
    const { servers } = await nameServers(ctx.plan);
    const answers = await queryRecords(ctx.plan.mailDomain, servers, { timeoutMs: 3000 });
    const ttls = answers.flatMap((a) => [a.a.ttl, a.aaaa.ttl]).filter((t): t is number => typeof t === 'number');
    return ttls.length ? Math.max(...ttls) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Between step 6 and step 5: stops the old host's units that hold relay ports, starts the
 * bridge (the same bridge again is a no-op, so a rerun passes here safely), records
 * bridge_up_at and ends the outage there.
 */
export async function bridgeUp(ctx: RunContext): Promise<BridgeView> {
  const { journal, out, plan } = ctx;
  const spec = await bridgeSpec(plan);
  out.heading(`\nBridge: the old host passes the relay's ports to the new host while DNS changes`);
  const states = await ctx.hosts.old.serviceStates([...PORT_HOLDERS]);
  // Any state but inactive or failed may hold a port (active, activating, reloading, ...).
  const holding = PORT_HOLDERS.filter((u) => !['inactive', 'failed', 'unknown'].includes(states[u] ?? 'unknown'));
  if (holding.length) await stopUnits(ctx, 'old', holding, 'they hold ports the bridge takes over');
  const ttl = journal.data.bridge?.old_ttl ?? (await oldTtl(ctx));
  journal.update((d) => {
    const before = d.bridge?.stopped_units ?? [];
    d.bridge = { listen: spec.listen, target: spec.target, ports: spec.ports ?? [], old_ttl: ttl, stopped_units: [...new Set([...before, ...holding])] };
  });
  if (holding.length) ctx.warn(`stopped ${holding.join(', ')} on ${hostLabel(plan, 'old')}: the bridge takes over their ports (they stay stopped, as mail does there)`);
  const view = await startBridgeOn(ctx.agents.old, spec, ctx.signal);
  const ports = view.ports.map((p) => p.port).join(' ');
  out.info(`  bridge up: ${view.listen.join(', ')} ports ${ports} -> ${view.target}`);
  ctx.emit('bridge_up', { listen: view.listen, target: view.target, ports: view.ports.map((p) => p.port) });
  journal.update((d) => {
    d.bridge_up_at ??= new Date().toISOString();
    d.outage.ended_at = d.bridge_up_at;
  });
  return view;
}

/** After step 5 with the bridge: when the authoritative servers answered. */
export function recordDnsSwitch(ctx: RunContext): void {
  if (ctx.opts.skipDnsWait) return;
  const end = ctx.journal.step('5').ended_at;
  if (end) ctx.journal.update((d) => (d.dns_switched_at ??= end));
}

/** The end of a bridged run: the bridge's counts and when stopping it is safe. */
export async function bridgeEnd(ctx: RunContext): Promise<{ view?: BridgeView; advice?: StopAdvice }> {
  const { out, journal } = ctx;
  let view: BridgeView;
  try {
    view = await bridgeStatusOn(ctx.agents.old, ctx.signal);
  } catch (err) {
    ctx.warn(`cannot read the bridge's status: ${(err as Error).message}`);
    return {};
  }
  const advice = stopAdvice(view, journal.data.dns_switched_at, journal.data.bridge?.old_ttl);
  const total = view.ports.reduce((n, p) => n + p.total, 0);
  const plan = shQuote(ctx.opts.plan);
  out.info(`The bridge on the old host stays up (${total} connection(s) bridged so far, ${view.open} open).`);
  const ttl = journal.data.bridge?.old_ttl;
  out.info(
    `  stop it when the authoritative servers have answered the new address for longer than the old TTL` +
      `${ttl !== undefined ? ` (${formatDuration(ttl)})` : ''}${journal.data.dns_switched_at ? `, i.e. after ${new Date(Date.parse(journal.data.dns_switched_at) + (ttl ?? 0) * 1000).toISOString()},` : ''} and no connection arrived for a while:`,
  );
  out.info(`  ${advice.safe ? 'safe now' : `not yet: ${advice.why}`}; check with cmmigrate bridge status --plan ${plan}, then cmmigrate bridge stop --plan ${plan}`);
  ctx.emit('bridge_advice', { stop_safe: advice.safe, why: advice.why, bridged: total, open: view.open });
  return { view, advice };
}

/** The bridge's arrivals per minute, all ports together, for the report. */
export function perMinuteOf(view: BridgeView | undefined): { minute: number; count: number }[] | undefined {
  if (!view?.ports.length) return undefined;
  const sums = new Map<number, number>();
  for (const p of view.ports) {
    const start = Number(p.per_minute.start_ms);
    p.per_minute.counts.forEach((c, i) => sums.set(start + i * 60_000, (sums.get(start + i * 60_000) ?? 0) + c));
  }
  return [...sums.entries()].sort((a, b) => a[0] - b[0]).map(([minute, count]) => ({ minute, count }));
}
