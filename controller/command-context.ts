/**
 * What controller/cli.ts gives every command: the signal that the first Ctrl-C aborts, the
 * reporter for its output, and the way to set an exit status without an error. Commands
 * parse their options and call one operation with these; they never import each other.
 */
import type { AgentHandle } from './agent-client';
import type { Plan } from './plan';
import type { Reporter } from './report';
import { loadOps } from './commands/load-ops';

export interface CommandContext {
  /** Aborted on the first Ctrl-C (SIGINT or SIGTERM). */
  readonly signal: AbortSignal;
  /** The reporter of this invocation: JSON lines with `json`, text otherwise. */
  reporter(json: boolean): Reporter;
  /** The exit status when the command ends without an error (verify: 1 when the hosts differ). */
  setExitCode(code: number): void;
}

/** Connects to the plan's agents, calls `fn` with them, and closes them whatever happens. */
export async function withAgents<T>(plan: Plan, fn: (agents: { old: AgentHandle; new: AgentHandle }) => Promise<T>): Promise<T> {
  const { connectAgent } = loadOps();
  const agents = { old: await connectAgent(plan, 'old'), new: await connectAgent(plan, 'new') };
  try {
    return await fn(agents);
  } finally {
    agents.old.client.close();
    agents.new.client.close();
  }
}
