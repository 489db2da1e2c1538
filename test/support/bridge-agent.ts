/**
 * A real old agent for bridge tests and the bridge bench: `cmmigrate init` makes a plan and
 * its TLS material in a temp directory, the built `cmmigrate-agent serve` runs with mTLS on
 * `agentHost`, and the controller's own client (connectAgent, bridge-client.ts) talks to
 * it, as `run --bridge` and `cmmigrate bridge` do. Needs `npm run build` first.
 */
import { readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { connectAgent, type AgentHandle } from '../../controller/agent-client';
import { loadPlan, type Plan } from '../../controller/plan';
import { cmmigrate, freePort, startAgentProcess, type AgentProcess } from './harness';

/** An old agent with its plan; close() stops it and removes the directory. */
export interface BridgeAgent {
  dir: string;
  /** The plan file (for `cmmigrate ... --plan`). */
  planFile: string;
  plan: Plan;
  agent: AgentProcess;
  /** The controller's connection to the old agent. */
  handle: AgentHandle;
  close(): Promise<void>;
}

/**
 * Starts an old agent on `agentHost` (a free port there) for a plan whose old host is
 * `oldHost` and new host `newHost` (IP literals); `node` is the agent's runtime.
 */
export async function startBridgeAgent(opts: { agentHost: string; oldHost: string; newHost: string; node?: string }): Promise<BridgeAgent> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-bridge-agent-'));
  try {
    const root = path.join(dir, 'old');
    await fs.mkdir(root);
    const port = await freePort(opts.agentHost);
    const planFile = path.join(dir, 'plan.toml');
    const agentAddress = `${opts.agentHost}:${port}`;
    // The new agent's address is never dialled here; the plan needs one.
    const init = await cmmigrate(['init', '--plan', planFile, '--domain', 'mail.example.org', '--old', opts.oldHost, '--new', opts.newHost, '--old-agent', agentAddress, '--new-agent', `${opts.newHost}:${port}`]);
    if (init.code !== 0) throw new Error(`cmmigrate init failed: ${init.stderr}`);
    const agent = await startAgentProcess({ listen: agentAddress, root, tlsDir: path.join(dir, '.cmmigrate', 'tls', 'old'), node: opts.node });
    let plan: Plan;
    let handle: AgentHandle;
    try {
      plan = await loadPlan(planFile);
      handle = await connectAgent(plan, 'old');
    } catch (err) {
      await agent.stop();
      throw err;
    }
    return {
      dir,
      planFile,
      plan,
      agent,
      handle,
      async close() {
        handle.client.close();
        await agent.stop();
        await fs.rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** CPU time of process `pid`, user + system, in clock ticks (fields 14 and 15 of /proc/<pid>/stat). */
export function processTicks(pid: number | 'self'): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}
