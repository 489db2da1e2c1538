/**
 * The bridge of issue 14, for `cmmigrate bridge status|stop` and `run --bridge`: what the
 * old agent bridges (the old host's addresses, the new host's address, the relay's ports),
 * its status as a table, and when stopping it is safe.
 */
import { promises as dnsp } from 'node:dns';
import * as net from 'node:net';
import { CmError } from '../../proto';
import { lastConnectionMs } from '../../proto/bridge-port';
import { connectAgent, type AgentHandle } from '../agent-client';
import { bridgeStatusOn, stopBridgeOn, type BridgeStartSpec, type BridgeView } from '../bridge-client';
import type { Plan } from '../plan';
import { formatBytes, formatDuration, type Reporter } from '../report';
import { Journal } from '../run/journal';
import { shQuote } from '../ssh';

/** Minutes without a bridged connection after which stopping the bridge is considered safe. */
export const QUIET_MINUTES = 10;

/** The addresses of `host`: itself when an IP literal, else what the controller resolves. */
async function addressesOf(host: string): Promise<string[]> {
  if (net.isIP(host)) return [host];
  try {
    return [...new Set((await dnsp.lookup(host, { all: true })).map((a) => a.address))];
  } catch {
    return [];
  }
}

/**
 * What the old agent bridges, from the plan: it listens on the old host's addresses
 * (`bridge_listen`, else `[old] host` and what it resolves to, IPv4 and IPv6) and passes
 * each connection to the new host's address (`[new] ipv4`, else `ipv6`, else its host).
 */
export async function bridgeSpec(plan: Plan): Promise<BridgeStartSpec> {
  const listen = plan.bridge?.listen?.length ? plan.bridge.listen : await addressesOf(plan.old.host);
  if (!listen.length) {
    throw new CmError('plan.invalid', `the bridge needs the old host's addresses, and ${plan.old.host} did not resolve`, {
      hint: `add bridge_listen = ["<old IPv4>", "<old IPv6>"] to ${plan.file}`,
    });
  }
  const target = plan.newAddresses.ipv4[0] ?? plan.newAddresses.ipv6[0] ?? (net.isIP(plan.new.host) ? plan.new.host : undefined);
  if (!target) {
    throw new CmError('plan.invalid', `the bridge needs the new host's address, and the plan names the new host ${plan.new.host} only by name`, {
      hint: `add ipv4 = "<new IPv4>" to the [new] table of ${plan.file}`,
    });
  }
  return { listen, target, ports: plan.bridge?.ports };
}

/** Connects to the old agent, calls `fn`, closes it. */
export async function withOldAgent<T>(plan: Plan, fn: (a: AgentHandle) => Promise<T>): Promise<T> {
  const a = await connectAgent(plan, 'old');
  try {
    return await fn(a);
  } finally {
    a.client.close();
  }
}

/** Is stopping the bridge safe: DNS answered the new address longer than the old TTL, and nothing arrived lately. */
export interface StopAdvice {
  safe: boolean;
  why: string;
}

/** Judges `view` against the journal's DNS switch and the old TTL (seconds, when known). */
export function stopAdvice(view: BridgeView, dnsSwitchedAt: string | undefined, oldTtl: number | undefined): StopAdvice {
  if (!view.running) return { safe: true, why: 'the bridge is not running' };
  const now = view.nowMs;
  const last = Math.max(0, ...view.ports.map((p) => lastConnectionMs(p) ?? 0));
  const quietMs = QUIET_MINUTES * 60_000;
  if (!dnsSwitchedAt) return { safe: false, why: 'the authoritative servers have not been seen answering the new address yet (step 5)' };
  const sinceDns = (now - Date.parse(dnsSwitchedAt)) / 1000;
  const ttl = oldTtl ?? 86_400;
  if (sinceDns <= ttl) {
    return { safe: false, why: `DNS switched ${formatDuration(sinceDns)} ago; resolvers may cache the old address for the old TTL (${formatDuration(ttl)}${oldTtl === undefined ? ', assumed' : ''})` };
  }
  if (view.open > 0) return { safe: false, why: `${view.open} bridged connection(s) are open now` };
  if (last && now - last < quietMs) return { safe: false, why: `a bridged connection arrived ${formatDuration((now - last) / 1000)} ago; wait until none arrived for ${QUIET_MINUTES} minutes` };
  return { safe: true, why: `DNS switched ${formatDuration(sinceDns)} ago (longer than the old TTL) and no connection arrived for ${QUIET_MINUTES} minutes` };
}

/** Prints a bridge's figures, one line per port. */
export function printBridge(view: BridgeView, out: Reporter): void {
  if (!view.running) {
    out.item(view.resumeError ? `bridge: not running (it did not come back after the agent restarted: ${view.resumeError.code}: ${view.resumeError.message})` : 'bridge: not running');
  } else {
    const since = view.startedMs ? ` since ${new Date(view.startedMs).toISOString()}` : '';
    out.item(`bridge: ${view.listen.join(', ')} -> ${view.target}${since}, ${view.open} connection(s) open`);
  }
  if (!view.ports.length) return;
  out.item(`  ${'port'.padStart(5)} ${'open'.padStart(5)} ${'total'.padStart(7)} ${'refused'.padStart(7)} ${'failed'.padStart(6)} ${'to new'.padStart(10)} ${'from new'.padStart(10)}  last connection      last hour (per minute, oldest first)`);
  for (const p of view.ports) {
    const lastMs = lastConnectionMs(p);
    const last = lastMs ? new Date(lastMs).toISOString().replace(/\.\d+Z$/, 'Z') : '-';
    const minutes = p.per_minute.counts.some((c) => c > 0) ? p.per_minute.counts.join(' ') : '-';
    out.item(
      `  ${String(p.port).padStart(5)} ${String(p.open).padStart(5)} ${String(p.total).padStart(7)} ${String(p.refused).padStart(7)} ${String(p.target_failed).padStart(6)} ${formatBytes(p.bytes_to_target).padStart(10)} ${formatBytes(p.bytes_from_target).padStart(10)}  ${last.padEnd(20)} ${minutes}`,
    );
  }
}

/** The bridge as JSON (the `--json` result). */
export function bridgeJson(view: BridgeView): Record<string, unknown> {
  return {
    running: view.running,
    listen: view.listen,
    target: view.target,
    started_at: view.startedMs ? new Date(view.startedMs).toISOString() : null,
    now: new Date(view.nowMs).toISOString(),
    open: view.open,
    ...(view.resumeError ? { resume_error: view.resumeError } : {}),
    ports: view.ports.map((p) => ({
      port: p.port,
      open: p.open,
      total: p.total,
      refused: p.refused,
      target_failed: p.target_failed,
      idle_closed: p.idle_closed,
      bytes_to_new: p.bytes_to_target,
      bytes_from_new: p.bytes_from_target,
      last_connection: lastConnectionMs(p) ? new Date(lastConnectionMs(p)!).toISOString() : null,
      per_minute: { start: new Date(Number(p.per_minute.start_ms)).toISOString(), counts: p.per_minute.counts },
    })),
  };
}

/** `cmmigrate bridge status`: the old agent's bridge, per port, and whether stopping is safe. */
export async function runBridgeStatus(plan: Plan, opts: { planArg: string; signal?: AbortSignal }, out: Reporter): Promise<{ view: BridgeView; advice: StopAdvice }> {
  const view = await withOldAgent(plan, (a) => bridgeStatusOn(a, opts.signal));
  const j = await Journal.read(plan.stateDir);
  const advice = stopAdvice(view, j?.data.dns_switched_at, j?.data.bridge?.old_ttl);
  printBridge(view, out);
  if (view.running) out.item(advice.safe ? `stopping is safe: ${advice.why} (cmmigrate bridge stop --plan ${shQuote(opts.planArg)})` : `not yet safe to stop: ${advice.why}`);
  out.event({ ...bridgeJson(view), stop_safe: advice.safe, stop_advice: advice.why });
  return { view, advice };
}

/** `cmmigrate bridge stop`: ends the bridge (listeners and connections); notes it in the journal. */
export async function runBridgeStop(plan: Plan, opts: { signal?: AbortSignal }, out: Reporter): Promise<BridgeView> {
  const view = await withOldAgent(plan, (a) => stopBridgeOn(a, opts.signal));
  const j = await Journal.read(plan.stateDir);
  if (j && j.data.bridge) j.update((d) => (d.bridge!.stopped_at = new Date().toISOString()));
  out.item(view.ports.length ? 'bridge stopped; its last counts:' : 'bridge: was not running');
  if (view.ports.length) printBridge(view, out);
  out.event({ event: 'bridge_stopped', ...bridgeJson(view) });
  return view;
}
