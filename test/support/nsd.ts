/**
 * A real authoritative DNS server for tests: Debian's NSD, started in the foreground on a
 * loopback address and a high port, with its configuration, zone files and control socket
 * in a temp directory, and privileges kept (no chroot, no user switch), so it runs the
 * same as root or not. `setZone` rewrites a zone file, reloads it through `nsd-control`
 * (a local socket: no keys) and returns once the server answers with the new serial.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as dgram from 'node:dgram';
import { promises as dnsp } from 'node:dns';
import { existsSync, promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ZoneRecord {
  /** Relative to the zone (`mail`, `@`) or absolute with a final dot. */
  name: string;
  ttl?: number;
  type: string;
  data: string;
}

export interface TestNsd {
  address: string;
  port: number;
  /** `address:port`, for Resolver.setServers. */
  endpoint: string;
  /** Replaces a zone (one named at start) and waits until the server serves it. */
  setZone(origin: string, records: ZoneRecord[]): Promise<void>;
  log(): string;
  stop(): Promise<void>;
}

function findBinary(name: string): string {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin']) {
    const p = path.join(dir, name);
    if (dir && existsSync(p)) return p;
  }
  throw new Error(`${name} is not installed: apt-get install nsd (.ci/run installs it)`);
}

/** A port free for both TCP and UDP on `address`. */
async function freeDnsPort(address: string): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer().once('error', reject);
      s.listen(0, address, () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const u = dgram.createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, address, () => u.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
  throw new Error(`no free port for DNS on ${address}`);
}

function zoneFile(origin: string, serial: number, records: ZoneRecord[]): string {
  return [
    `$ORIGIN ${origin}.`,
    '$TTL 300',
    `@ 300 IN SOA ns1.${origin}. hostmaster.${origin}. ${serial} 3600 600 86400 60`,
    ...records.map((r) => `${r.name} ${r.ttl ?? 300} IN ${r.type} ${r.data}`),
    '',
  ].join('\n');
}

/** Starts NSD on `address` (and `port`, default a free one) serving `zones`; resolves once every zone answers. */
export async function startNsd(address: string, zones: Record<string, ZoneRecord[]>, fixedPort?: number): Promise<TestNsd> {
  const nsd = findBinary('nsd');
  const nsdControl = findBinary('nsd-control');
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-nsd-'));
  const port = fixedPort ?? (await freeDnsPort(address));
  const endpoint = `${address}:${port}`;
  const conf = path.join(dir, 'nsd.conf');
  const serials: Record<string, number> = {};
  const writeZone = async (origin: string, records: ZoneRecord[]): Promise<number> => {
    const serial = (serials[origin] ?? 0) + 1;
    serials[origin] = serial;
    const tmp = path.join(dir, `${origin}.zone.tmp`);
    await fsp.writeFile(tmp, zoneFile(origin, serial, records));
    await fsp.rename(tmp, path.join(dir, `${origin}.zone`));
    return serial;
  };
  for (const [origin, records] of Object.entries(zones)) await writeZone(origin, records);
  await fsp.writeFile(
    conf,
    [
      'server:',
      `  ip-address: ${address}`,
      `  port: ${port}`,
      '  server-count: 1',
      '  username: ""',
      '  chroot: ""',
      `  zonesdir: "${dir}"`,
      '  database: ""',
      `  zonelistfile: "${dir}/zone.list"`,
      `  xfrdfile: "${dir}/xfrd.state"`,
      `  xfrdir: "${dir}"`,
      `  pidfile: "${dir}/nsd.pid"`,
      '  verbosity: 1',
      '  hide-version: yes',
      'remote-control:',
      '  control-enable: yes',
      `  control-interface: "${dir}/nsd.ctl"`,
      ...Object.keys(zones).flatMap((z) => ['zone:', `  name: ${z}`, `  zonefile: ${z}.zone`]),
      '',
    ].join('\n'),
  );

  let log = '';
  const child: ChildProcess = spawn(nsd, ['-d', '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const serving = async (origin: string): Promise<void> => {
    const deadline = Date.now() + 10_000;
    const r = new dnsp.Resolver({ timeout: 300, tries: 1 });
    r.setServers([endpoint]);
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`nsd on ${endpoint} exited:\n${log}`);
      const soa = await r.resolveSoa(origin).catch(() => undefined);
      if (soa?.serial === serials[origin]) return;
      if (Date.now() > deadline) throw new Error(`nsd on ${endpoint} does not serve ${origin} serial ${serials[origin]} (has ${soa?.serial}):\n${log}`);
      await new Promise((res) => setTimeout(res, 25));
    }
  };

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killer);
    }
    await fsp.rm(dir, { recursive: true, force: true });
  };

  try {
    for (const origin of Object.keys(zones)) await serving(origin);
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    address,
    port,
    endpoint,
    async setZone(origin, records) {
      if (!(origin in serials)) throw new Error(`zone ${origin} was not configured at start`);
      await writeZone(origin, records);
      await run(nsdControl, ['-c', conf, 'reload', origin]);
      await serving(origin);
    },
    log: () => log,
    stop,
  };
}
