/**
 * `cmmigrate status --plan F` and the old host's bridge (issue 14): with a real old agent
 * (mTLS) and the built CLI, status shows the bridge while one is up (ports, open
 * connections, total, last connection), says nothing about it when none runs, and an old
 * agent that does not answer leaves status as it was (exit 0, the journal shown), with one
 * line when the run started a bridge it did not stop. Addresses: bridge 127.0.11.1, new
 * host 127.0.11.2, agent 127.0.11.3, client 127.0.11.5. Needs `npm run build`.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startBridgeOn } from '../controller/bridge-client';
import { Journal } from '../controller/run/journal';
import { startBridgeAgent, type BridgeAgent } from './support/bridge-agent';
import { cmmigrate } from './support/harness';

const BRIDGE = '127.0.11.1';
const TARGET = '127.0.11.2';
const AGENT = '127.0.11.3';
const CLIENT = '127.0.11.5';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function lastJson(stdout: string): Record<string, any> {
  return JSON.parse(stdout.split('\n').filter((l) => l.trim().startsWith('{')).at(-1)!);
}

describe('cmmigrate status and the bridge', () => {
  it('shows the bridge while it is up, nothing when none runs, and stays as it was when the old agent does not answer', async () => {
    const old: BridgeAgent = await startBridgeAgent({ agentHost: AGENT, oldHost: BRIDGE, newHost: TARGET });
    cleanups.push(() => old.close());
    const status = (json = false) => cmmigrate(['status', '--plan', old.planFile, ...(json ? ['--json'] : [])], { cwd: old.dir });

    const sockets = new Set<net.Socket>();
    const target = net.createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.pipe(s);
    });
    target.listen(0, TARGET);
    await once(target, 'listening');
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => target.close(r));
    });
    const port = (target.address() as net.AddressInfo).port;

    // A journal, as run writes one; no bridge started yet.
    const j = await Journal.open(old.plan.stateDir, { mailDomain: old.plan.mailDomain, oldHost: old.plan.old.host, newHost: old.plan.new.host });
    const none = await status();
    expect(none.code).toBe(0);
    expect(none.stdout).toContain('move of mail.example.org');
    expect(none.stdout).not.toMatch(/^\s*bridge|bridge status/m);
    expect(lastJson((await status(true)).stdout)).not.toHaveProperty('bridge');

    // The bridge is up, with one connection open through it.
    await startBridgeOn(old.handle, { listen: [BRIDGE], target: TARGET, ports: [port] });
    j.update((d) => (d.bridge = { listen: [BRIDGE], target: TARGET, ports: [port], stopped_units: [] }));
    const client = net.connect({ host: BRIDGE, port, localAddress: CLIENT });
    cleanups.push(() => void client.destroy());
    const echoed = once(client, 'data');
    client.write('hello');
    expect(String((await echoed)[0])).toBe('hello');

    const up = await status();
    expect(up.code).toBe(0);
    expect(up.stdout).toContain(`bridge: ${BRIDGE} -> ${TARGET}`);
    expect(up.stdout).toContain('1 connection(s) open');
    const row = up.stdout.split('\n').find((l) => l.trim().startsWith(String(port)))!;
    expect(row.trim().split(/\s+/).slice(0, 3)).toEqual([String(port), '1', '1']); // port, open, total
    expect(row).toMatch(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/); // last connection
    expect(up.stdout).toContain(`cmmigrate bridge status --plan ${old.planFile}`);
    const upJson = lastJson((await status(true)).stdout);
    expect(upJson.bridge).toMatchObject({ running: true, open: 1, target: TARGET, ports: [{ port, open: 1, total: 1 }] });
    expect(Date.parse(upJson.bridge.ports[0].last_connection)).toBeGreaterThan(Date.now() - 120_000);

    // The old agent does not answer: status is what it was, plus one line about the bridge the run left up.
    await old.agent.stop();
    const t0 = Date.now();
    const down = await status();
    expect(down.code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(down.stdout).toContain('move of mail.example.org');
    expect(down.stdout).toMatch(/next: cmmigrate run --plan/);
    expect(down.stdout).toMatch(/bridge: the old agent at 127\.0\.11\.3:\d+ did not answer/);
    expect(lastJson((await status(true)).stdout).bridge_error).toMatchObject({ code: expect.any(String) });

    // Once the run's bridge is recorded as stopped, an unreachable agent is not worth a line.
    j.update((d) => (d.bridge!.stopped_at = new Date().toISOString()));
    const stopped = await status();
    expect(stopped.code).toBe(0);
    expect(stopped.stdout).not.toMatch(/^\s*bridge|bridge status/m);
  }, 90_000);
});
