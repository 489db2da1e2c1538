/**
 * A flood through a real old agent (issue 14): `cmmigrate-agent serve` with mTLS gRPC, its
 * bridge started with the controller's BridgeStart (bridge-client.ts) and the default
 * limits. More connections than the global limit (4000) arrive from four flooding
 * addresses; each address gets its 100 (maxPerSource) and the rest are refused at once.
 * While the flood is on, a client from another address completes a bridged exchange, and
 * the agent's own Info and BridgeStatus calls answer; once the flood ends, nothing is left
 * open. Addresses: bridge 127.0.10.1, new host 127.0.10.2, agent 127.0.10.3, legitimate
 * client 127.0.10.5, flood 127.0.10.11-14. Needs `npm run build`.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { unary } from '../controller/agent-client';
import { bridgeStatusOn, startBridgeOn, stopBridgeOn, type BridgeView } from '../controller/bridge-client';
import { DEFAULT_LIMITS } from '../agent/bridge/limits';
import type { InfoReply__Output } from '../proto';
import { startBridgeAgent, type BridgeAgent } from './support/bridge-agent';

const BRIDGE = '127.0.10.1';
const TARGET = '127.0.10.2';
const AGENT = '127.0.10.3';
const LEGIT = '127.0.10.5';
const FLOOD = ['127.0.10.11', '127.0.10.12', '127.0.10.13', '127.0.10.14'];
/** The agent's own calls must answer within this while the flood is on (a loaded 2-core machine). */
const CALL_BOUND_MS = 5_000;

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function connect(port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: BRIDGE, localAddress, allowHalfOpen: true });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

async function until<T>(what: string, fn: () => T | false | undefined | Promise<T | false | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('bridge flood through a real agent', () => {
  it('refuses what is over the limits, lets another address through, keeps the agent answering, and releases everything', async () => {
    const old: BridgeAgent = await startBridgeAgent({ agentHost: AGENT, oldHost: BRIDGE, newHost: TARGET });
    cleanups.push(() => old.close());
    const targetSockets = new Set<net.Socket>();
    const target = net.createServer({ allowHalfOpen: true }, (s) => {
      targetSockets.add(s);
      s.on('close', () => targetSockets.delete(s));
      s.on('error', () => undefined);
      s.pipe(s);
    });
    target.listen(0, TARGET);
    await once(target, 'listening');
    cleanups.push(() => {
      for (const s of targetSockets) s.destroy();
      return new Promise((r) => target.close(r));
    });
    const port = (target.address() as net.AddressInfo).port;
    const started = await startBridgeOn(old.handle, { listen: [BRIDGE], target: TARGET, ports: [port] });
    cleanups.push(() => stopBridgeOn(old.handle).catch(() => undefined));
    expect(started.running).toBe(true);

    const perSource = DEFAULT_LIMITS.maxPerSource;
    const perAddress = Math.ceil((DEFAULT_LIMITS.maxConnections + 400) / FLOOD.length);
    const N = perAddress * FLOOD.length;
    const admitted = perSource * FLOOD.length;
    expect(N).toBeGreaterThan(DEFAULT_LIMITS.maxConnections);

    // The agent's own calls, one after the other all through the flood.
    let flooding = true;
    let calls = 0;
    let worstMs = 0;
    const agentLoop = (async () => {
      while (flooding) {
        const t0 = performance.now();
        const info = await unary<Record<string, never>, InfoReply__Output>(old.handle, old.handle.client.Info, {}, CALL_BOUND_MS);
        expect(info.role).toBe('old');
        await bridgeStatusOn(old.handle);
        worstMs = Math.max(worstMs, performance.now() - t0);
        calls++;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    cleanups.push(() => {
      flooding = false;
      return agentLoop.catch(() => undefined);
    });

    const flood: net.Socket[] = [];
    cleanups.push(() => flood.forEach((s) => s.destroy()));
    let endedByBridge = 0;
    for (let k = 0; k < perAddress; k += 100) {
      const batch = await Promise.all(
        FLOOD.flatMap((source) =>
          Array.from({ length: Math.min(100, perAddress - k) }, () =>
            connect(port, source).then((s) => {
              s.on('error', () => undefined);
              s.once('end', () => endedByBridge++); // the bridge's FIN for a refused connection
              return s;
            }),
          ),
        ),
      );
      flood.push(...batch);
    }
    expect(flood.length).toBe(N);
    await until('the refused connections to be closed', () => endedByBridge >= N - admitted);
    const callsBefore = calls;

    // A client from another address still gets a bridged exchange.
    const legit = await connect(port, LEGIT);
    cleanups.push(() => void legit.destroy());
    const echoed = once(legit, 'data');
    legit.write('a1 NOOP\r\n');
    expect(String((await echoed)[0])).toBe('a1 NOOP\r\n');

    // The agent answered during the flood, within the bound, and counts what it refused.
    await until('an agent call after the flood connected', () => calls > callsBefore);
    const during: BridgeView = await bridgeStatusOn(old.handle);
    flooding = false;
    await agentLoop;
    if (process.env.BRIDGE_TEST_VERBOSE) console.info({ N, admitted, calls, worstMs });
    expect(worstMs).toBeLessThan(CALL_BOUND_MS);
    const p = during.ports.find((x) => x.port === port)!;
    expect(p).toMatchObject({ total: N + 1, refused: N - admitted, open: admitted + 1 });
    expect(during.open).toBe(admitted + 1);
    expect(endedByBridge).toBe(N - admitted);
    // The admitted flood connections are real bridged connections.
    const open = flood.filter((s) => !s.readableEnded);
    expect(open.length).toBe(admitted);
    const back = once(open[0], 'data');
    open[0].write('still here');
    expect(String((await back)[0])).toBe('still here');

    // The flood ends: everything is released.
    for (const s of flood) s.destroy();
    legit.destroy();
    const after = await until('every bridged connection closed', async () => {
      const v = await bridgeStatusOn(old.handle);
      return v.open === 0 ? v : undefined;
    });
    expect(after.ports.find((x) => x.port === port)!).toMatchObject({ open: 0, total: N + 1, refused: N - admitted });
    await until('the new host\'s side closed', () => targetSockets.size === 0);
  }, 60_000);
});
