/**
 * Real processes for end-to-end tests: a migration directory with a plan and TLS material
 * (made by `cmmigrate init`), two agent processes of the built CLI on loopback addresses
 * with separate roots, and a way to run the controller CLI.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, type Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { AGENT_NODE_FLAGS } from '../../proto';
import { generateRelayTree, writeIdentity, type RelayTreeOptions, type RelayTreeStats } from './relay-tree';

/** The repository root, from test/support (vitest) or dist-test/test/support (the demo, the bench). */
export const REPO = ((): string => {
  let d = __dirname;
  while (!existsSync(path.join(d, 'package.json')) && path.dirname(d) !== d) d = path.dirname(d);
  return d;
})();
/** The agent as it ships: the one-file bundle that install-agent uploads and package.json's bin names. */
export const AGENT_CLI = path.join(REPO, 'dist', 'cmmigrate-agent.js');
export const CONTROLLER_CLI = path.join(REPO, 'dist', 'controller', 'cli.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a built CLI to completion. */
export function runNode(script: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; node?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(opts.node ?? process.execPath, [script, ...args], { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export function cmmigrate(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return runNode(CONTROLLER_CLI, args, opts);
}

/** A port that is free on `host` right now. */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface AgentProcess {
  child: ChildProcess;
  address: string;
  log: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Start `cmmigrate-agent serve` and wait until it listens. `env` is laid over this
 * process's environment (for example a PATH with the host-tools stand-ins first).
 */
export async function startAgentProcess(opts: { listen: string; root: string; tlsDir: string; extra?: string[]; node?: string; script?: string; cwd?: string; env?: NodeJS.ProcessEnv }): Promise<AgentProcess> {
  const child = spawn(opts.node ?? process.execPath, [...AGENT_NODE_FLAGS, opts.script ?? AGENT_CLI, 'serve', '--listen', opts.listen, '--root', opts.root, '--tls-dir', opts.tlsDir, ...(opts.extra ?? [])], {
    stdio: ['ignore', 'ignore', 'pipe'],
    cwd: opts.cwd,
    env: opts.env ? { ...process.env, ...opts.env } : undefined,
  });
  let log = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent on ${opts.listen} did not start:\n${log}`)), 15_000);
    child.stderr!.on('data', (d) => {
      log += d;
      if (log.includes('agent listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent on ${opts.listen} exited with ${code}:\n${log}`));
    });
  });
  return {
    child,
    address: opts.listen,
    log: () => log,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}

export interface Migration {
  dir: string;
  plan: string;
  oldRoot: string;
  newRoot: string;
  oldAddress: string;
  newAddress: string;
  stats: RelayTreeStats;
  old: AgentProcess;
  new: AgentProcess;
  cli(args: string[], timeoutMs?: number): Promise<CliResult>;
  restart(side: 'old' | 'new'): Promise<void>;
  close(): Promise<void>;
}

export interface MigrationOptions {
  tree?: Partial<RelayTreeOptions>;
  /** Write the relay's users into the new root (as step 2 would), default true. */
  newUsers?: boolean;
  /** Prepare the old tree further before agents start. */
  prepare?: (oldRoot: string) => Promise<void>;
  /** Extra `cmmigrate-agent serve` options for both agents. */
  agentArgs?: string[];
  /** Extra environment of each agent (see test/support/host-tools.ts). */
  agentEnv?: Partial<Record<'old' | 'new', NodeJS.ProcessEnv>>;
}

/** A temp migration: generated old tree, empty new root, plan, TLS, two running agents. */
export async function setupMigration(opts: MigrationOptions = {}): Promise<Migration> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-e2e-'));
  const oldRoot = path.join(dir, 'old');
  const newRoot = path.join(dir, 'new');
  const stats = await generateRelayTree({ root: oldRoot, seed: 1, addresses: 6, messagesPerAddress: 8, uidBase: 5000, ...opts.tree });
  await fs.mkdir(newRoot, { recursive: true });
  if (opts.newUsers === false) {
    await fs.mkdir(path.join(newRoot, 'etc'), { recursive: true });
    await fs.writeFile(path.join(newRoot, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
    await fs.writeFile(path.join(newRoot, 'etc/group'), 'root:x:0:\n');
  } else {
    await writeIdentity(newRoot, 7000);
  }
  if (opts.prepare) await opts.prepare(oldRoot);
  const [po, pn] = await Promise.all([freePort('127.0.0.2'), freePort('127.0.0.3')]);
  const oldAddress = `127.0.0.2:${po}`;
  const newAddress = `127.0.0.3:${pn}`;
  const plan = path.join(dir, 'plan.toml');
  const init = await cmmigrate(['init', '--plan', plan, '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3', '--old-agent', oldAddress, '--new-agent', newAddress]);
  if (init.code !== 0) throw new Error(`init failed: ${init.stderr}`);
  const tls = path.join(dir, '.cmmigrate', 'tls');
  const start = (side: 'old' | 'new') =>
    startAgentProcess({ listen: side === 'old' ? oldAddress : newAddress, root: side === 'old' ? oldRoot : newRoot, tlsDir: path.join(tls, side), extra: opts.agentArgs, env: opts.agentEnv?.[side] });
  const m: Migration = {
    dir,
    plan,
    oldRoot,
    newRoot,
    oldAddress,
    newAddress,
    stats,
    old: await start('old'),
    new: await start('new'),
    cli: (args, timeoutMs) => cmmigrate(args, { cwd: dir, timeoutMs }),
    async restart(side) {
      await m[side].stop();
      m[side] = await start(side);
    },
    async close() {
      await Promise.all([m.old.stop(), m.new.stop()]);
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
  return m;
}

/**
 * The directories of an agent's own state below a test's root (the default --state-dir,
 * <root>/var/lib/cmmigrate): the change journal makes `journal/` there at its first sync,
 * for its cookies, even in a pass that is refused before it writes anything of the relay.
 */
export const AGENT_STATE_DIRS: readonly string[] = ['var', 'var/lib', 'var/lib/cmmigrate', 'var/lib/cmmigrate/journal'];

/** The name prefix of the receiving agent's temp files. */
export const TMP_PREFIX = '.cmmigrate-tmp-';

/** Every entry below `root` (not `root` itself) with its lstat, depth first; a missing or vanishing directory has none. */
export async function* walkTree(root: string): AsyncGenerator<{ abs: string; name: string; st: Stats }> {
  let names: string[];
  try {
    names = await fs.readdir(root);
  } catch {
    return;
  }
  for (const name of names) {
    const abs = path.join(root, name);
    const st = await fs.lstat(abs).catch(() => null);
    if (!st) continue;
    yield { abs, name, st };
    if (st.isDirectory()) yield* walkTree(abs);
  }
}

/** Every path below `root` whose name marks it as a cmmigrate temp file. */
export async function findTempFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of walkTree(root)) if (e.name.startsWith(TMP_PREFIX)) out.push(e.abs);
  return out;
}

/** The host paths of every root of a final pass. */
export const ALL_ROOT_PATHS = [
  '/home/vmail/mail',
  '/etc/dkimkeys',
  '/var/lib/acme',
  '/var/spool/postfix',
  '/etc/chatmail-nocreate',
  '/etc/ssl/certs/mailserver.pem',
  '/etc/ssl/private/mailserver.key',
  '/home/vmail/passdb.sqlite',
];
