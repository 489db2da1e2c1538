/**
 * The bridge (agent/bridge, issue 14) on loopback: real sockets, a real process killed and
 * restarted. Addresses: the bridge listens on 127.0.7.1 (and ::1), the "new host" serves
 * on 127.0.7.2, legitimate clients come from 127.0.7.5, the flood from 127.0.7.6, and
 * 127.0.7.3 stands in for the agent's own port.
 */
import { spawn } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { resumeBridge, startBridge, type Bridge, type BridgeRequest } from '../agent/bridge/bridge';
import { DEFAULT_LIMITS, relayPortLimits, type BridgeLimits } from '../agent/bridge/limits';
import { BridgeManager } from '../agent/bridge/manager';
import { RELAY_PORT_NUMBERS } from '../agent/bridge/ports';
import { readState, statePath } from '../agent/bridge/state';
import { MinuteCounter, PortStats } from '../agent/bridge/stats';
import { startBridgeProcess, type BridgeProcess } from './support/bridge-process';
import { failure } from './support/expect-error';

const BRIDGE = '127.0.7.1';
const TARGET = '127.0.7.2';
const AGENT = '127.0.7.3';
const LEGIT = '127.0.7.5';
const FLOOD = '127.0.7.6';
const KiB = 1024;
const MiB = 1024 * KiB;

/** `size` pseudo-random bytes from `seed` (AES-CTR of zeros: fast, the same every run). */
function seeded(seed: number, size: number): Buffer {
  const key = createHash('sha256').update(`bridge-test-${seed}`).digest().subarray(0, 16);
  const c = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(size)), c.final()]);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A server that stands in for the new host; it remembers its sockets. */
interface Target {
  server: net.Server;
  port: number;
  sockets: Set<net.Socket>;
}

async function listenTarget(handler: (s: net.Socket) => void, host = TARGET, port = 0): Promise<Target> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    handler(s);
  });
  server.listen(port, host);
  await once(server, 'listening');
  return { server, port: (server.address() as net.AddressInfo).port, sockets };
}

const echo = (s: net.Socket): void => void s.pipe(s);

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function closeTarget(t: Target): Promise<void> {
  for (const s of t.sockets) s.destroy();
  return new Promise((resolve) => t.server.close(() => resolve()));
}

/** A target on a free port and a bridge on the same port of BRIDGE (retried if that port is taken there). */
async function bridgePair(
  handler: (s: net.Socket) => void,
  limits: Partial<BridgeLimits> = {},
  extra: { listen?: string[]; stateDir?: string; now?: () => number; signal?: AbortSignal } = {},
): Promise<{ bridge: Bridge; target: Target; port: number; request: BridgeRequest }> {
  for (let attempt = 0; ; attempt++) {
    const target = await listenTarget(handler);
    const request: BridgeRequest = { listen: extra.listen ?? [BRIDGE], ports: [target.port], target: TARGET, limits };
    try {
      const bridge = await startBridge(request, { stateDir: extra.stateDir, now: extra.now, signal: extra.signal });
      cleanups.push(() => closeTarget(target));
      cleanups.push(() => bridge.stop());
      return { bridge, target, port: target.port, request };
    } catch (err) {
      await closeTarget(target);
      if (attempt > 5) throw err;
    }
  }
}

function connect(port: number, host = BRIDGE, localAddress?: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host, localAddress, allowHalfOpen: true });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Everything `s` sends until its FIN (or close). */
function readAll(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  return new Promise((resolve, reject) => {
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

/** Writes `data` honouring backpressure; `end` sends FIN after it. */
async function writeAll(s: net.Socket, data: Buffer, end: boolean, chunk = 256 * KiB): Promise<void> {
  for (let off = 0; off < data.length; off += chunk) {
    if (!s.write(data.subarray(off, off + chunk))) await once(s, 'drain');
  }
  if (end) s.end();
}

/** One request/response round trip on an echo connection. */
async function roundTrip(s: net.Socket, msg: string): Promise<string> {
  const got = once(s, 'data');
  s.write(msg);
  const [d] = (await got) as [Buffer];
  return d.toString();
}

/** Resolves when the bridge has ended `s` (its FIN arrived, or the socket closed); rejects after `ms`. */
function endedWithin(s: net.Socket, ms: number): Promise<void> {
  if (s.closed || s.readableEnded) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`socket still open after ${ms} ms`)), ms);
    const done = (): void => {
      clearTimeout(t);
      resolve();
    };
    s.once('end', done);
    s.once('close', done);
    s.resume(); // 'end' comes only once the data before it is read
  });
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const portStatus = (b: Bridge, port: number) => b.status().ports.find((p) => p.port === port)!;

describe('bridge: bytes', () => {
  it('passes large random data both ways unchanged, and each side\'s FIN while the other direction still flows', async () => {
    const up = seeded(1, 24 * MiB);
    const down = seeded(2, 24 * MiB);
    const half = 12 * MiB;
    let received: Promise<Buffer> | undefined;
    const { bridge, port } = await bridgePair((s) => {
      // Half of `down` at once, the rest only after the client's FIN has arrived: the
      // reverse direction must stay open after a half-close.
      received = readAll(s);
      void writeAll(s, down.subarray(0, half), false).then(async () => {
        await received;
        await writeAll(s, down.subarray(half), true);
      });
    });
    const c = await connect(port, BRIDGE, LEGIT);
    const back = readAll(c);
    await writeAll(c, up, true);
    const [got, sent] = await Promise.all([back, received!]);
    expect(sent.length).toBe(up.length);
    expect(sha(sent)).toBe(sha(up));
    expect(got.length).toBe(down.length);
    expect(sha(got)).toBe(sha(down));
    await endedWithin(c, 2000);
    await until(() => portStatus(bridge, port).open === 0, 2000, 'the connection to be counted closed');
    const st = portStatus(bridge, port);
    expect(st).toMatchObject({ total: 1, refused: 0, targetFailed: 0, bytesToTarget: up.length, bytesFromTarget: down.length, buffered: 0 });
  }, 60_000);

  it('passes the server\'s FIN first and keeps the client\'s data flowing after it', async () => {
    const tail = seeded(3, 4 * MiB);
    let got: Promise<Buffer> | undefined;
    const { port } = await bridgePair((s) => {
      got = readAll(s);
      s.end('* BYE greeting then FIN\r\n');
    });
    const c = await connect(port, BRIDGE, LEGIT);
    const greeting = await readAll(c);
    expect(greeting.toString()).toBe('* BYE greeting then FIN\r\n');
    expect(c.destroyed).toBe(false);
    await writeAll(c, tail, true);
    expect(sha(await got!)).toBe(sha(tail));
    await endedWithin(c, 2000);
  }, 30_000);

  it('listens on IPv6 ([::1]) and IPv4 at once', async () => {
    const v6 = await new Promise<boolean>((resolve) => {
      const s = net.createServer().once('error', () => resolve(false));
      s.listen(0, '::1', () => s.close(() => resolve(true)));
    });
    if (!v6) return void console.warn('no ::1 on this machine: IPv6 case skipped');
    const { bridge, port } = await bridgePair(echo, {}, { listen: [BRIDGE, '::1'] });
    const data = seeded(4, 2 * MiB);
    for (const host of ['::1', BRIDGE]) {
      const c = await connect(port, host);
      expect(c.remoteAddress).toBe(host);
      const back = readAll(c);
      await writeAll(c, data, true);
      expect(sha(await back)).toBe(sha(data));
    }
    await until(() => portStatus(bridge, port).open === 0, 2000, 'both connections closed');
    expect(portStatus(bridge, port)).toMatchObject({ total: 2, bytesToTarget: 2 * data.length, bytesFromTarget: 2 * data.length });
  }, 30_000);
});

describe('bridge: limits', () => {
  it('keeps a flood of 3000 connections from one address within its limit while another client and the agent port still answer', async () => {
    const { bridge, port } = await bridgePair(echo, { maxPerSource: 50, maxConnections: 500 });
    const agent = await listenTarget(echo, AGENT);
    cleanups.push(() => closeTarget(agent));
    const agentConn = await connect(agent.port, AGENT, LEGIT);
    cleanups.push(() => void agentConn.destroy());

    // The agent port answers all through the flood.
    let flooding = true;
    let agentAnswers = 0;
    let agentWorst = 0;
    const agentLoop = (async () => {
      while (flooding) {
        const t0 = performance.now();
        expect(await roundTrip(agentConn, `ping ${agentAnswers}`)).toBe(`ping ${agentAnswers}`);
        agentWorst = Math.max(agentWorst, performance.now() - t0);
        agentAnswers++;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    const flood: net.Socket[] = [];
    cleanups.push(() => flood.forEach((s) => s.destroy()));
    let closedByBridge = 0;
    const N = 3000;
    for (let start = 0; start < N; start += 250) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(250, N - start) }, () =>
          connect(port, BRIDGE, FLOOD).then((s) => {
            s.on('error', () => undefined);
            s.once('end', () => closedByBridge++); // the bridge's FIN (the client socket is half-open capable)
            return s;
          }),
        ),
      );
      flood.push(...batch);
    }
    await until(() => closedByBridge >= N - 50, 10_000, 'the refused connections to be closed');

    // A legitimate client from another address still gets through.
    const legit = await connect(port, BRIDGE, LEGIT);
    expect(await roundTrip(legit, 'a1 NOOP\r\n')).toBe('a1 NOOP\r\n');
    flooding = false;
    await agentLoop;
    legit.destroy();

    expect(closedByBridge).toBe(N - 50);
    const st = portStatus(bridge, port);
    expect(st.refused).toBe(N - 50);
    expect(st.total).toBe(N + 1);
    expect(agentAnswers).toBeGreaterThan(0);
    expect(agentWorst).toBeLessThan(2000);
    // The 50 flood connections that were let in are real bridged connections.
    const open = flood.filter((s) => !s.readableEnded);
    expect(open.length).toBe(50);
    expect(await roundTrip(open[0], 'still here')).toBe('still here');
  }, 120_000);

  it('refuses over the global limit, closes at once, counts, and lets one in again when one leaves', async () => {
    const { bridge, port } = await bridgePair(echo, { maxConnections: 20, maxPerSource: 100 });
    const socks: net.Socket[] = [];
    cleanups.push(() => socks.forEach((s) => s.destroy()));
    let closed = 0;
    for (let k = 0; k < 30; k++) {
      const s = await connect(port, BRIDGE, `127.0.7.${10 + (k % 6)}`);
      s.once('end', () => closed++);
      socks.push(s);
    }
    await until(() => closed === 10, 5000, '10 refused connections closed');
    expect(portStatus(bridge, port)).toMatchObject({ open: 20, refused: 10, total: 30 });
    // One leaves, one more may come in.
    socks.find((s) => !s.readableEnded)!.destroy();
    await until(() => portStatus(bridge, port).open === 19, 2000, 'the closed one counted');
    const again = await connect(port, BRIDGE, LEGIT);
    socks.push(again);
    expect(await roundTrip(again, 'hello')).toBe('hello');
  }, 30_000);

  it('applies a per-port limit to all sources together', async () => {
    // The limit is keyed by the port, which is only known once the target listens.
    let port = 0;
    let bridge: Bridge | undefined;
    for (let attempt = 0; !bridge; attempt++) {
      const t = await listenTarget(echo);
      try {
        bridge = await startBridge({ listen: [BRIDGE], ports: [t.port], target: TARGET, limits: { perPort: { [t.port]: 3 } } });
        port = t.port;
        cleanups.push(() => closeTarget(t));
        cleanups.push(() => bridge!.stop());
      } catch (err) {
        await closeTarget(t);
        if (attempt > 5) throw err;
      }
    }
    const socks = await Promise.all([1, 2, 3, 4, 5].map((k) => connect(port, BRIDGE, `127.0.7.${20 + k}`)));
    cleanups.push(() => socks.forEach((s) => s.destroy()));
    await until(() => portStatus(bridge!, port).refused === 2, 2000, 'two refused');
    expect(portStatus(bridge!, port).open).toBe(3);
  });

  it('has defaults below the relay\'s per-client limits', () => {
    // postfix default smtpd_client_connection_count_limit 50 on port 25; 1000 // 5 on 465 and 587.
    expect(DEFAULT_LIMITS.perPort[25]).toBeLessThan(50);
    expect(DEFAULT_LIMITS.perPort[465]).toBeLessThan(200);
    expect(DEFAULT_LIMITS.perPort[587]).toBeLessThan(200);
    expect(relayPortLimits(100)[587]).toBeLessThan(20);
    expect(DEFAULT_LIMITS.idleTimeoutMs).toBeGreaterThan(30 * 60_000);
    expect([...RELAY_PORT_NUMBERS].sort((a, b) => a - b)).toEqual([25, 80, 143, 443, 465, 587, 993]);
  });
});

describe('bridge: failures and time', () => {
  it('closes clients cleanly and counts when the new host refuses', async () => {
    const t = await listenTarget(echo);
    const port = t.port;
    await closeTarget(t); // nothing listens on TARGET:port now
    const bridge = await startBridge({ listen: [BRIDGE], ports: [port], target: TARGET });
    cleanups.push(() => bridge.stop());
    const t0 = Date.now();
    const clients = await Promise.all(Array.from({ length: 20 }, () => connect(port, BRIDGE, LEGIT)));
    const data = await Promise.all(clients.map((c) => readAll(c)));
    await Promise.all(clients.map((c) => endedWithin(c, 2000)));
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(data.every((d) => d.length === 0)).toBe(true);
    await until(() => portStatus(bridge, port).open === 0, 2000, 'none open');
    expect(portStatus(bridge, port)).toMatchObject({ total: 20, targetFailed: 20, refused: 0 });
  }, 15_000);

  it('gives up on a new host that does not answer after connectTimeoutMs', async () => {
    // A listener whose accept queue is full: the kernel drops further SYNs, so connect hangs.
    const py = spawn('python3', ['-c', `import socket,time\ns=socket.socket()\ns.bind(('${TARGET}',0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)`], { stdio: ['ignore', 'pipe', 'inherit'] });
    cleanups.push(() => void py.kill());
    const [line] = (await once(py.stdout!, 'data')) as [Buffer];
    const port = Number(line.toString().trim());
    const fillers: net.Socket[] = [];
    cleanups.push(() => fillers.forEach((s) => s.destroy()));
    for (let k = 0; k < 4; k++) fillers.push(net.connect({ port, host: TARGET }).on('error', () => undefined));
    await new Promise((r) => setTimeout(r, 200));
    const bridge = await startBridge({ listen: [BRIDGE], ports: [port], target: TARGET, limits: { connectTimeoutMs: 300 } });
    cleanups.push(() => bridge.stop());
    const t0 = Date.now();
    const c = await connect(port, BRIDGE, LEGIT);
    await endedWithin(c, 3000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    await until(() => portStatus(bridge, port).open === 0, 2000, 'none open');
    expect(portStatus(bridge, port)).toMatchObject({ targetFailed: 1, total: 1 });
  }, 15_000);

  it('closes a connection idle for idleTimeoutMs, and not one that talks', async () => {
    const { bridge, port } = await bridgePair(echo, { idleTimeoutMs: 400 });
    const idle = await connect(port, BRIDGE, LEGIT);
    const busy = await connect(port, BRIDGE, LEGIT);
    const t0 = Date.now();
    const ticker = setInterval(() => busy.write('.'), 100);
    cleanups.push(() => clearInterval(ticker));
    await endedWithin(idle, 3000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(350);
    await new Promise((r) => setTimeout(r, 800));
    expect(busy.destroyed).toBe(false);
    clearInterval(ticker);
    busy.destroy();
    expect(portStatus(bridge, port).idleClosed).toBe(1);
  }, 15_000);

  it('counts arrivals per minute over the last hour', async () => {
    const T0 = Date.UTC(2026, 10, 30, 10, 0, 0);
    let now = T0 + 5_000;
    const { bridge, port } = await bridgePair(echo, {}, { now: () => now });
    for (let k = 0; k < 3; k++) (await connect(port, BRIDGE, LEGIT)).destroy();
    now = T0 + 2 * 60_000 + 1_000;
    for (let k = 0; k < 2; k++) (await connect(port, BRIDGE, LEGIT)).destroy();
    await until(() => portStatus(bridge, port).total === 5, 2000, 'five arrivals');
    const pm = portStatus(bridge, port).perMinute;
    expect(pm.counts).toHaveLength(60);
    expect(pm.startMs).toBe(T0 + 2 * 60_000 - 59 * 60_000);
    expect(pm.counts.slice(-3)).toEqual([3, 0, 2]);
    expect(portStatus(bridge, port).lastConnectionMs).toBe(now);
    now = T0 + 61 * 60_000; // the first minute has left the hour
    expect(portStatus(bridge, port).perMinute.counts.reduce((a, b) => a + b)).toBe(2);
  });

  it('keeps a ring of 60 minutes that wraps and restores', () => {
    const m = new MinuteCounter();
    const base = 1_000 * 60_000;
    for (let k = 0; k < 130; k++) m.add(base + k * 60_000, k);
    const snap = m.snapshot(base + 129 * 60_000);
    expect(snap.counts).toEqual(Array.from({ length: 60 }, (_, k) => 70 + k));
    const again = new PortStats(25);
    again.restore({ port: 25, total: 9, refused: 1, targetFailed: 0, idleClosed: 0, bytesToTarget: 5, bytesFromTarget: 7, lastConnectionMs: base, perMinute: snap });
    const st = again.status(base + 130 * 60_000);
    expect(st.perMinute.counts.slice(0, 59)).toEqual(snap.counts.slice(1));
    expect(st.perMinute.counts[59]).toBe(0);
    expect(st).toMatchObject({ total: 9, refused: 1, bytesToTarget: 5, bytesFromTarget: 7, open: 0 });
  });
});

/** The most one TCP connection's send plus receive buffer may grow to here (tcp_wmem, tcp_rmem maxima). */
function kernelBufferMax(): number {
  const max = (f: string): number => Number(readFileSync(`/proc/sys/net/ipv4/${f}`, 'utf8').trim().split(/\s+/)[2]);
  return max('tcp_rmem') + max('tcp_wmem');
}

describe('bridge: backpressure', () => {
  for (const dir of ['client to new host', 'new host to client'] as const) {
    it(`holds at most a few highWaterMarks when the reader is slow (${dir})`, async () => {
      const hwm = 64 * KiB;
      const data = seeded(5, 32 * MiB);
      let far: net.Socket | undefined;
      const { bridge, port } = await bridgePair((s) => {
        far = s;
        if (dir === 'client to new host') s.pause();
        else void writeAll(s, data, true, 64 * KiB);
      }, { highWaterMark: hwm });
      const c = await connect(port, BRIDGE, LEGIT);
      await until(() => far !== undefined, 2000, 'the bridged connection');
      const [writer, reader] = dir === 'client to new host' ? [c, far!] : [far!, c];
      if (dir === 'client to new host') void writeAll(c, data, true, 64 * KiB);
      else c.pause();

      // The reader takes nothing for a while: the writer must stall long before 32 MiB.
      await new Promise((r) => setTimeout(r, 1500));
      const inBridge = portStatus(bridge, port).buffered;
      const handedOver = writer.bytesWritten - writer.writableLength;
      const gap = handedOver - reader.bytesRead + reader.readableLength;
      expect(inBridge).toBeGreaterThan(0);
      expect(inBridge).toBeLessThanOrEqual(5 * hwm);
      // The rest of the gap is kernel socket buffers: two hops, each a send and a receive buffer.
      expect(gap).toBeLessThanOrEqual(2 * kernelBufferMax() + 5 * hwm);
      if (process.env.BRIDGE_TEST_VERBOSE) console.info({ dir, inBridge, gap, handedOver });

      // Then it reads: the bridge stays bounded all along, and every byte arrives.
      let worst = 0;
      const sampler = setInterval(() => (worst = Math.max(worst, portStatus(bridge, port).buffered)), 5);
      cleanups.push(() => clearInterval(sampler));
      const chunks: Buffer[] = [];
      reader.on('data', (d: Buffer) => chunks.push(d));
      reader.resume(); // it was paused explicitly: a 'data' listener alone does not resume it
      await once(reader, 'end');
      clearInterval(sampler);
      const got = Buffer.concat(chunks);
      expect(got.length).toBe(data.length);
      expect(sha(got)).toBe(sha(data));
      expect(worst).toBeLessThanOrEqual(5 * hwm);
      if (process.env.BRIDGE_TEST_VERBOSE) console.info({ dir, worst });
    }, 60_000);
  }
});

describe('bridge: stop, state and restart', () => {
  it('stop() closes every listener and connection', async () => {
    const { bridge, port, target } = await bridgePair(echo);
    const socks = await Promise.all(Array.from({ length: 10 }, () => connect(port, BRIDGE, LEGIT)));
    for (const s of socks) s.on('error', () => undefined);
    await until(() => target.sockets.size === 10, 2000, 'ten bridged connections');
    const streaming = setInterval(() => socks[0].write(Buffer.alloc(64 * KiB)), 1);
    cleanups.push(() => clearInterval(streaming));
    await new Promise((r) => setTimeout(r, 100));
    await bridge.stop();
    clearInterval(streaming);
    await Promise.all(socks.map((s) => endedWithin(s, 2000)));
    await until(() => target.sockets.size === 0, 2000, 'the target side closed');
    expect(bridge.status().open).toBe(0);
    await expect(connect(port, BRIDGE, LEGIT)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await bridge.stop(); // twice is fine
  });

  it('keeps its state on disk and resumes from it', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-bridge-'));
    cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
    const { bridge, port, request } = await bridgePair(echo, { maxPerSource: 7 }, { stateDir: dir });
    const st = await fs.stat(statePath(dir));
    expect(st.mode & 0o777).toBe(0o600);
    const saved = readState(dir)!;
    expect(saved.config).toMatchObject({ listen: request.listen, ports: request.ports, target: TARGET, limits: { ...DEFAULT_LIMITS, maxPerSource: 7, perPort: { ...DEFAULT_LIMITS.perPort } } });
    const c = await connect(port, BRIDGE, LEGIT);
    expect(await roundTrip(c, 'one')).toBe('one');
    c.destroy();
    await until(() => bridge.status().open === 0, 2000, 'closed');

    await bridge.stop({ keepState: true });
    await expect(connect(port, BRIDGE, LEGIT)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect((await fs.readdir(dir)).sort()).toEqual(['bridge.json']);

    const resumed = (await resumeBridge(dir))!;
    cleanups.push(() => resumed.stop());
    expect(resumed.startedMs).toBe(bridge.startedMs);
    expect(resumed.config).toEqual(saved.config);
    const c2 = await connect(port, BRIDGE, LEGIT);
    expect(await roundTrip(c2, 'two')).toBe('two');
    c2.destroy();
    expect(portStatus(resumed, port)).toMatchObject({ total: 2, bytesToTarget: 6 });

    await resumed.stop();
    await expect(fs.stat(statePath(dir))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await resumeBridge(dir)).toBeNull();

    await fs.writeFile(statePath(dir), '{"version":1,"config":{"listen":["mail.example.org"]}}');
    expect((await failure(resumeBridge(dir))).code).toBe('bridge.bad_state');
    await fs.writeFile(statePath(dir), '{"version":1,"config":{"listen":["mail.exa');
    expect((await failure(resumeBridge(dir))).code).toBe('bridge.bad_state');
    // Damaged counters cost the counters, not the bridge.
    const badCounts = { ...saved, stats: [{ ...saved.stats[0], total: 'many', perMinute: { startMs: 0, counts: [-1] } }] };
    await fs.writeFile(statePath(dir), JSON.stringify(badCounts));
    const fresh = (await resumeBridge(dir))!;
    cleanups.push(() => fresh.stop());
    expect(portStatus(fresh, port)).toMatchObject({ total: 0, open: 0 });
  });

  it('stops on abort and keeps the state for the next start', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-bridge-'));
    cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
    const ac = new AbortController();
    const { bridge, port } = await bridgePair(echo, {}, { stateDir: dir, signal: ac.signal });
    const c = await connect(port, BRIDGE, LEGIT);
    ac.abort();
    await endedWithin(c, 2000);
    await bridge.stop(); // the stop the abort began, with keepState
    expect(readState(dir)?.config.target).toBe(TARGET);
    const again = (await resumeBridge(dir))!;
    cleanups.push(() => again.stop());
    expect(portStatus(again, port).total).toBe(1);
  });

  it('refuses bad requests and a port it cannot take, listening on nothing', async () => {
    expect((await failure(startBridge({ listen: ['old.example.org'], ports: [25], target: TARGET }))).code).toBe('bridge.bad_config');
    expect((await failure(startBridge({ listen: [BRIDGE], ports: [25, 25], target: TARGET }))).code).toBe('bridge.bad_config');
    expect((await failure(startBridge({ listen: [BRIDGE], ports: [70000], target: TARGET }))).code).toBe('bridge.bad_config');
    expect((await failure(startBridge({ listen: [BRIDGE], ports: [25], target: BRIDGE }))).code).toBe('bridge.bad_config');
    expect((await failure(startBridge({ listen: [BRIDGE], ports: [25], target: TARGET, limits: { maxPerSource: 0 } }))).code).toBe('bridge.bad_limits');
    expect((await failure(startBridge({ listen: [BRIDGE], ports: [25], target: TARGET, limits: { perPort: { 0: 1 } } }))).code).toBe('bridge.bad_limits');
    const holder = await listenTarget(echo, '127.0.7.4');
    cleanups.push(() => closeTarget(holder));
    const free = await listenTarget(echo, '127.0.7.4');
    const freePort = free.port;
    await closeTarget(free);
    const err = await failure(startBridge({ listen: ['127.0.7.4'], ports: [freePort, holder.port], target: TARGET }));
    expect(err.code).toBe('bridge.listen_failed');
    expect(err.message).toContain(`127.0.7.4:${holder.port}`);
    expect(err.hint).toContain('systemctl stop');
    // The port taken before the failure was let go again.
    const again = await listenTarget(echo, '127.0.7.4', freePort);
    await closeTarget(again);
  });

  it('manager: one bridge, the same start twice is a no-op, another is refused; a failed resume is shown, not thrown', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-bridge-'));
    cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
    const target = await listenTarget(echo);
    cleanups.push(() => closeTarget(target));
    const warnings: string[] = [];
    const shutdown = new AbortController();
    const m = new BridgeManager({ stateDir: dir, signal: shutdown.signal, onWarning: (w) => warnings.push(w.code) });
    cleanups.push(() => m.stop());
    await m.resume();
    expect(m.status()).toEqual({ running: false });
    const request: BridgeRequest = { listen: [BRIDGE], ports: [target.port], target: TARGET };
    expect(await m.start(request)).toMatchObject({ running: true, open: 0 });
    expect(await m.start(request)).toMatchObject({ running: true });
    expect((await failure(m.start({ ...request, limits: { maxPerSource: 3 } }))).code).toBe('bridge.already_running');
    const c = await connect(target.port, BRIDGE, LEGIT);
    expect(await roundTrip(c, 'x')).toBe('x');
    c.destroy();

    // An agent restart while the bridge's port was taken by something else meanwhile.
    const before = m.status();
    expect(before.running && before.ports[0].total).toBe(1);
    shutdown.abort();
    await until(() => readState(dir)?.stats[0]?.total === 1, 2000, 'the counts saved at shutdown');
    const squatter = await listenTarget(echo, BRIDGE, target.port);
    const after = new BridgeManager({ stateDir: dir, onWarning: (w) => warnings.push(w.code) });
    await after.resume();
    expect(after.status()).toMatchObject({ running: false, resumeError: { code: 'bridge.listen_failed' } });
    expect(warnings).toEqual(['bridge.listen_failed']);
    await closeTarget(squatter);
    expect(await after.stop()).toEqual({ running: false });
    expect(readState(dir)).toBeNull();
  });

  it('survives SIGKILL of its process: a new process resumes from the state file', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-bridge-'));
    cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
    const target = await listenTarget(echo);
    cleanups.push(() => closeTarget(target));
    const request: BridgeRequest = { listen: [BRIDGE], ports: [target.port], target: TARGET };
    let proc: BridgeProcess = await startBridgeProcess(['start', JSON.stringify(request), dir]);
    cleanups.push(() => proc.end('kill'));
    const c = await connect(target.port, BRIDGE, LEGIT);
    expect(await roundTrip(c, 'before')).toBe('before');

    await proc.end('kill');
    await endedWithin(c, 2000);
    await expect(connect(target.port, BRIDGE, LEGIT)).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    proc = await startBridgeProcess(['resume', dir]);
    const c2 = await connect(target.port, BRIDGE, LEGIT);
    expect(await roundTrip(c2, 'after')).toBe('after');
    const status = JSON.parse(await proc.ask('status'));
    expect(status.ports[0]).toMatchObject({ port: target.port, open: 1 });
    c2.destroy();
    await proc.end('stop');
    expect(readState(dir)).toBeNull();
  }, 30_000);
});
