/**
 * The bundled agent (dist/cmmigrate-agent.js) on Node.js 18.19, Debian 12's nodejs (issue
 * 4): the runtime comes from the npm registry (node-linux-<arch>@18.19.0 ships bin/node)
 * and is cached under node_modules/.cache. The bundle runs from a directory of its own,
 * so nothing can come from node_modules, and syncs with a Node 20 agent both ways.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cmmigrate, freePort, REPO, runNode, startAgentProcess, type AgentProcess } from './support/harness';
import { generateRelayTree, writeIdentity } from './support/relay-tree';

const run = promisify(execFile);
const NODE_VERSION = '18.19.0';
const CACHE = path.join(REPO, 'node_modules', '.cache', 'cmmigrate', `node-v${NODE_VERSION}-linux-${process.arch}`);

/** bin/node of Node.js 18.19.0 from the npm registry, downloaded once. */
async function node18(): Promise<string> {
  const bin = path.join(CACHE, 'bin', 'node');
  if (existsSync(bin)) return bin;
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-node18-'));
  try {
    const { stdout } = await run('npm', ['pack', `node-linux-${process.arch}@${NODE_VERSION}`, '--pack-destination', tmp, '--silent'], { cwd: tmp });
    const tgz = path.join(tmp, stdout.trim().split('\n').pop()!);
    await run('tar', ['-xzf', tgz, '-C', tmp, 'package/bin/node']);
    await fs.mkdir(path.dirname(CACHE), { recursive: true });
    await fs.mkdir(path.join(tmp, 'cache'));
    await fs.rename(path.join(tmp, 'package', 'bin'), path.join(tmp, 'cache', 'bin'));
    await fs.rename(path.join(tmp, 'cache'), CACHE).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err; // another run was first
    });
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
  return bin;
}

/** `cmmigrate-agent serve` from the bundle alone, under `node`, in the bundle's own directory. */
function startBundle(node: string, bundle: string, o: { listen: string; root: string; tlsDir: string }): Promise<AgentProcess> {
  return startAgentProcess({ ...o, node, script: bundle, cwd: path.dirname(bundle) });
}

describe('the bundled agent on Node.js 18.19', () => {
  let node: string;
  let dir: string;
  let bundle: string;
  let plan: string;
  let oldRoot: string;
  let oldAddress: string;
  let newAddress: string;
  const agents: AgentProcess[] = [];
  const cli = (args: string[]) => cmmigrate(args, { cwd: dir, timeoutMs: 60_000 });

  beforeAll(async () => {
    node = await node18();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-node18-'));
    // The bundle alone in a directory: no node_modules anywhere above it.
    bundle = path.join(dir, 'agent-only', 'cmmigrate-agent.js');
    await fs.mkdir(path.dirname(bundle));
    await fs.copyFile(path.join(REPO, 'dist', 'cmmigrate-agent.js'), bundle);
    oldRoot = path.join(dir, 'old');
    await generateRelayTree({ root: oldRoot, seed: 18, addresses: 3, messagesPerAddress: 6, uidBase: 5000 });
    const [po, pn] = await Promise.all([freePort('127.0.0.2'), freePort('127.0.0.3')]);
    oldAddress = `127.0.0.2:${po}`;
    newAddress = `127.0.0.3:${pn}`;
    plan = path.join(dir, 'plan.toml');
    const init = await cmmigrate(['init', '--plan', plan, '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3', '--old-agent', oldAddress, '--new-agent', newAddress]);
    expect(init.code, init.stderr).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('runs from a directory of its own and carries the wire contract', async () => {
    expect((await run(node, ['--version'])).stdout.trim()).toBe(`v${NODE_VERSION}`);
    const pkg = JSON.parse(await fs.readFile(path.join(REPO, 'package.json'), 'utf8'));
    const v = await runNode(bundle, ['--version'], { node, cwd: '/' });
    expect(v.stdout.trim(), v.stderr).toBe(pkg.version);
    // The descriptor the bundle carries is the .proto of this tree.
    const check = await runNode(path.join(REPO, 'proto', 'build', 'proto-json.js'), ['--check']);
    expect(check.code, check.stderr).toBe(0);
  }, 30_000);

  const tls = (side: string): string => path.join(dir, '.cmmigrate', 'tls', side);

  it('sends: old agent on Node 18.19 (bundle), new agent on Node 20', async () => {
    const newRoot = path.join(dir, 'new-a');
    await writeIdentity(newRoot, 7000);
    const old = await startBundle(node, bundle, { listen: oldAddress, root: oldRoot, tlsDir: tls('old') });
    const neu = await startAgentProcess({ listen: newAddress, root: newRoot, tlsDir: tls('new') });
    agents.push(old, neu);
    const a = await cli(['agents', '--plan', plan, '--json']);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout.trim().split('\n').map((l) => JSON.parse(l).node)).toEqual([`v${NODE_VERSION}`, process.version]);
    for (const phase of ['initial', 'final']) {
      const r = await cli(['sync', '--plan', plan, '--phase', phase]);
      expect(r.code, r.stderr + old.log()).toBe(0);
    }
    const v = await cli(['verify', '--plan', plan]);
    expect(v.code, v.stderr).toBe(0);
    await Promise.all([old.stop(), neu.stop()]);
  }, 60_000);

  it('receives: new agent on Node 18.19 (bundle), old agent on Node 20', async () => {
    const newRoot = path.join(dir, 'new-b');
    await writeIdentity(newRoot, 7000);
    const old = await startAgentProcess({ listen: oldAddress, root: oldRoot, tlsDir: tls('old') });
    const neu = await startBundle(node, bundle, { listen: newAddress, root: newRoot, tlsDir: tls('new') });
    agents.push(old, neu);
    for (const phase of ['initial', 'final']) {
      const r = await cli(['sync', '--plan', plan, '--phase', phase]);
      expect(r.code, r.stderr + neu.log()).toBe(0);
    }
    const v = await cli(['verify', '--plan', plan]);
    expect(v.code, v.stderr).toBe(0);
  }, 60_000);
});
