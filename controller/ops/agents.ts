/**
 * The agents of a plan, for `cmmigrate agents` and install-agent: asks both agents of the plan for their version and host facts over
 * mutual TLS, and says which one does not answer. Exit 1 when one is unreachable.
 */
import { CmError, PROTOCOL_VERSION, type InfoReply__Output } from '../../proto';
import { connectAgent, unary } from '../agent-client';
import type { Plan } from '../plan';
import { formatBytes, type Reporter } from '../report';

export type Side = 'old' | 'new';

export interface AgentStatus {
  side: Side;
  address: string;
  info?: InfoReply__Output;
  error?: CmError;
}

/** One Info call to the agent of `side`; failures are returned, not thrown. */
export async function agentStatus(plan: Plan, side: Side, deadlineMs = 5_000): Promise<AgentStatus> {
  const address = plan[side].agent;
  let handle: Awaited<ReturnType<typeof connectAgent>> | undefined;
  try {
    handle = await connectAgent(plan, side);
    const info = await unary<Record<string, never>, InfoReply__Output>(handle, handle.client.Info, {}, deadlineMs);
    if (info.role !== side) {
      return {
        side,
        address,
        info,
        error: new CmError('agents.wrong_agent', `the agent at ${address} is the ${info.role || 'unknown'} agent, not the ${side} one`, {
          hint: `the plan's ${side}.agent address reaches the other host's agent: correct ${side}.agent in ${plan.file}, then run cmmigrate init --plan ${plan.file} again`,
        }),
      };
    }
    return { side, address, info };
  } catch (err) {
    // This machine's own TLS material is missing or broken: no agent could answer.
    if (err instanceof CmError && err.code.startsWith('pki.')) throw err;
    return { side, address, error: err instanceof CmError ? err : new CmError('connect.failed', `the ${side} agent at ${address}: ${(err as Error).message}`, { cause: err }) };
  } finally {
    handle?.client.close();
  }
}

/** Calls Info until the agent answers or `timeoutMs` passes; the last failure otherwise. */
export async function waitForAgent(plan: Plan, side: Side, timeoutMs: number): Promise<AgentStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await agentStatus(plan, side, Math.max(1_000, Math.min(5_000, deadline - Date.now())));
    if (!s.error || s.error.code === 'agents.wrong_agent' || Date.now() >= deadline) return s;
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** The agent's facts as lines for people. */
export function describeAgent(s: AgentStatus, mailboxesDir: string): string[] {
  const head = `${s.side}  ${s.address}`;
  if (!s.info || s.error) return [`${head}  NOT REACHABLE: ${s.error?.message ?? 'no answer'}`];
  const i = s.info;
  return [
    `${head}  cmmigrate-agent ${i.version} (protocol ${i.protocol}, node ${i.node})`,
    `      host ${i.hostname}, ${i.os || 'unknown OS'}, ${formatBytes(Number(i.free_bytes))} free under ${mailboxesDir}`,
  ];
}

/** The agent's facts as the fields of a JSON event. */
export function statusEvent(s: AgentStatus): Record<string, unknown> {
  const i = s.info;
  return {
    side: s.side,
    address: s.address,
    reachable: !s.error,
    ...(i ? { version: i.version, protocol: i.protocol, hostname: i.hostname, os: i.os, node: i.node, free_bytes: Number(i.free_bytes), root: i.root } : {}),
    ...(s.error ? { code: s.error.code, error: s.error.message } : {}),
  };
}

/** Asks both agents and lists them; rejects when one does not answer (agents.unreachable, agents.wrong_agent). */
export async function runAgents(plan: Plan, opts: { planArg: string }, out: Reporter): Promise<AgentStatus[]> {
  const all = await Promise.all((['old', 'new'] as const).map((side) => agentStatus(plan, side)));
  for (const s of all) {
    for (const line of describeAgent(s, plan.mailboxesDir)) out.item(line);
    if (s.info && s.info.protocol !== PROTOCOL_VERSION) {
      out.warn(`the ${s.side} agent speaks protocol ${s.info.protocol}, this controller ${PROTOCOL_VERSION}: run cmmigrate install-agent ${s.side} --plan ${opts.planArg}`);
    }
    out.event({ event: 'agent', ...statusEvent(s) });
  }
  const down = all.filter((s) => s.error);
  if (down.length > 0) {
    const wrong = down.find((s) => s.error!.code === 'agents.wrong_agent');
    if (wrong) throw wrong.error!;
    throw new CmError('agents.unreachable', down.map((s) => s.error!.message).join('; '), {
      hint:
        `on the host, \`systemctl status cmmigrate-agent\` says whether it runs; a firewall must let TCP ${down.map((s) => plan[s.side].agentPort).join(' and ')} through; ` +
        `install or restart it with: ${down.map((s) => `cmmigrate install-agent ${s.side} --plan ${opts.planArg}`).join(' and ')}`,
      details: { unreachable: down.map((s) => s.side) },
    });
  }
  return all;
}
