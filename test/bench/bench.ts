/**
 * `npm run bench`: cmmigrate against `tar | tar`, `tar | ssh | tar` and `rsync` over ssh,
 * in one run, on the same generated relay tree and the same machine (issue 6).
 *
 * Groups of cases, each case run `--runs` times (rounds, the order rotated each round):
 *
 * - initial: the mailboxes copied into an empty target: `cmmigrate sync --phase initial`
 *   between two agents on loopback (mutual TLS, SHA-256 per file, as shipped), `tar c | tar
 *   x`, `tar c | ssh 127.0.0.1 tar x` (the published procedure), `rsync -aH` over ssh.
 * - delayed: the same initial copy through a TCP proxy that adds `--delay-ms` (25) each way,
 *   in front of the agents' connection (the new agent dials the proxy: a plan whose old
 *   agent address is the proxy's) and of ssh.
 * - final: after a realistic change of the source (relay-activity.ts: flag renames, new/ to
 *   cur/ moves, deliveries, expunges, grown index logs, logins, a new and a removed
 *   address), `cmmigrate sync --phase final` (every root) against `rsync -aH --delete`
 *   over ssh of the same roots. Each round starts from the pristine tree again: a fresh
 *   copy of the source, an untimed initial pass of each tool, then the change.
 * - final-quick-verify: what the outage of step 4 costs: `cmmigrate sync --phase final` and
 *   then `cmmigrate verify --quick`, timed together with the same agents, against rsync's
 *   final pass. As `run` does at step 3, an untimed quick verify before the change leaves
 *   each agent its digests, so that the timed one looks only at what its change journal
 *   says changed since.
 * - unchanged: a second final pass right after the first, nothing changed in between,
 *   against a second `rsync -aH --delete`: the cost of the walk alone.
 * - verify: `cmmigrate verify` on the full tree after the final pass.
 * - startup: `cmmigrate --version` against `node -e 0`, --startup-runs (20) runs each,
 *   alternating (startup.ts); each bench run records the median of those.
 *
 * The agents' CPU seconds become CPU per entry (final and unchanged cases: per entry the
 * pass decided on) and per GiB (initial cases: per GiB of content sent).
 *
 * Each cmmigrate operation gets freshly started agents, so each agent's peak RSS (VmHWM)
 * belongs to that operation; agent start-up is not timed, the controller's whole run is.
 * The source is always on a tmpfs the bench mounts; the target is on that tmpfs
 * (`--target tmpfs`, default) or in a directory on disk (`--target disk`), where
 * cmmigrate's flush (one syncfs per root) costs what it costs. tar and rsync do not flush;
 * `sync` runs between cases, outside the timing.
 *
 * The generated tree is cached in --cache-dir, keyed by its options, and reused.
 * Needs root, tmpfs, 127.0.0.2 and 127.0.0.3, Debian's openssh-server and rsync.
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { AGENT_CLI, ALL_ROOT_PATHS, CONTROLLER_CLI, REPO, cmmigrate, freePort, startAgentProcess, type AgentProcess } from '../support/harness';
import { relayActivity, type ActivityOptions, type ActivityReport } from '../support/relay-activity';
import { generateRelayTree, writeIdentity, type RelayTreeStats } from '../support/relay-tree';
import { startSshd, type TestSshd } from '../support/sshd';
import { descendants, foreignSeconds, foreignTicks } from './busy';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy';
import { SSH_DELAYED, SSH_DIRECT, rsyncSsh, runShell, sh, tarLocal, tarSsh, writeSshConfig } from './peers';
import { controllerStartup } from './startup';
import { cpuSeconds, passEntries, peakRssMiB } from './proc';
import { computeRatios, formatTable, gitState, machineFacts, type CaseResult, type Machine } from './report';

const MAILBOXES = 'home/vmail/mail';
const HOUR = 3_600_000;

interface CaseDef {
  group: 'initial' | 'delayed' | 'final' | 'unchanged' | 'verify' | 'startup';
  what: string;
}

export const CASES: Record<string, CaseDef> = {
  'initial-cmmigrate': { group: 'initial', what: 'cmmigrate sync --phase initial (mTLS, SHA-256)' },
  'initial-tar': { group: 'initial', what: 'tar c | tar x (local, no ssh)' },
  'initial-tar-ssh': { group: 'initial', what: 'tar c | ssh 127.0.0.1 tar x' },
  'initial-rsync-ssh': { group: 'initial', what: 'rsync -aH over ssh' },
  'delayed-cmmigrate': { group: 'delayed', what: 'cmmigrate sync --phase initial, 50 ms RTT' },
  'delayed-tar-ssh': { group: 'delayed', what: 'tar c | ssh tar x, 50 ms RTT' },
  'final-cmmigrate': { group: 'final', what: 'cmmigrate sync --phase final after the change' },
  'final-quick-verify': { group: 'final', what: 'cmmigrate sync --phase final, then verify --quick' },
  'final-rsync-ssh': { group: 'final', what: 'rsync -aH --delete over ssh after the change' },
  'unchanged-cmmigrate': { group: 'unchanged', what: 'cmmigrate sync --phase final again, nothing changed' },
  'unchanged-rsync-ssh': { group: 'unchanged', what: 'rsync -aH --delete over ssh again, nothing changed' },
  verify: { group: 'verify', what: 'cmmigrate verify, full tree' },
  'startup-cmmigrate': { group: 'startup', what: 'cmmigrate --version (median of --startup-runs)' },
  'startup-node': { group: 'startup', what: 'node -e 0 (median of --startup-runs)' },
};

interface Options {
  addresses: number;
  messages: number;
  seed: number;
  runs: number;
  target: 'tmpfs' | 'disk';
  out: string;
  cases: string[];
  cacheDir: string;
  workDir: string;
  delayMs: number;
  startupRuns: number;
  keep: boolean;
}

const USAGE = `usage: npm run bench -- [--addresses N] [--messages N] [--seed N] [--runs N]
                        [--target tmpfs|disk] [--out FILE] [--cases a,b,...]
                        [--cache-dir DIR] [--work-dir DIR] [--delay-ms N]
                        [--startup-runs N] [--keep]
cases: ${Object.keys(CASES).join(', ')}`;

class UsageError extends Error {}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      addresses: { type: 'string', default: '500' },
      // 500 x 30: about 23,000 files (2,980 of them hard links) and 0.99 GB with seed 1.
      messages: { type: 'string', default: '30' },
      seed: { type: 'string', default: '1' },
      runs: { type: 'string', default: '3' },
      target: { type: 'string', default: 'tmpfs' },
      out: { type: 'string' },
      cases: { type: 'string', default: Object.keys(CASES).join(',') },
      'cache-dir': { type: 'string', default: '/var/tmp/cmmigrate-bench' },
      'work-dir': { type: 'string', default: '/var/tmp' },
      'delay-ms': { type: 'string', default: '25' },
      'startup-runs': { type: 'string', default: '20' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const int = (name: string, v: string, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} ${v}: expected a whole number of at least ${min}`);
    return n;
  };
  if (values.target !== 'tmpfs' && values.target !== 'disk') throw new UsageError(`--target ${values.target}: expected tmpfs or disk`);
  const cases = values.cases.split(',').filter(Boolean);
  const unknown = cases.filter((c) => !(c in CASES));
  if (unknown.length || !cases.length) throw new UsageError(`--cases: unknown ${unknown.join(', ') || '(none given)'}; known: ${Object.keys(CASES).join(', ')}`);
  const stamp = new Date().toISOString().replace(/:/g, '-').replace(/\..*/, '');
  return {
    addresses: int('addresses', values.addresses, 2),
    messages: int('messages', values.messages, 1),
    seed: int('seed', values.seed, 0),
    runs: int('runs', values.runs, 1),
    target: values.target,
    out: path.resolve(values.out ?? path.join(REPO, 'bench-results', `bench-${stamp}-${values.target}.json`)),
    // Keep the order of CASES: groups run in that order.
    cases: Object.keys(CASES).filter((c) => cases.includes(c)),
    cacheDir: path.resolve(values['cache-dir']),
    workDir: path.resolve(values['work-dir']),
    delayMs: int('delay-ms', values['delay-ms'], 0),
    startupRuns: int('startup-runs', values['startup-runs'], 1),
    keep: values.keep,
  };
}

function checkPrerequisites(): void {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (the bench chowns files, mounts a tmpfs and runs sshd)');
  for (const [bin, pkg] of [
    ['tar', 'tar'],
    ['rsync', 'rsync'],
    ['ssh', 'openssh-client'],
    ['/usr/sbin/sshd', 'openssh-server'],
    ['mount', 'mount'],
    ['python3', 'python3'],
  ]) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) missing.push(`${bin} (Debian package ${pkg})`);
  }
  for (const f of [AGENT_CLI, CONTROLLER_CLI]) if (!existsSync(f)) missing.push(`${f} (run npm run build)`);
  if (missing.length) throw new UsageError(`the bench needs: ${missing.join('; ')}`);
}


function runOrThrow(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
}

/** Flush dirty pages, so the next case does not pay for the previous one's writes. */
function flush(): void {
  runOrThrow('sync', []);
}

async function resetDir(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true });
}

/** Content bytes of the regular files below `rels` (relative to `root`), each inode once. */
async function regularBytes(root: string, rels: string[]): Promise<number> {
  const seen = new Set<number>();
  let total = 0;
  const walk = async (p: string): Promise<void> => {
    const st = await fs.lstat(p);
    if (st.isDirectory()) {
      for (const n of await fs.readdir(p)) await walk(path.join(p, n));
    } else if (st.isFile() && !seen.has(st.ino)) {
      seen.add(st.ino);
      total += st.size;
    }
  };
  for (const r of rels) await walk(path.join(root, r));
  return total;
}

/** The changes of the source between the two passes, scaled to the tree (hours of use). */
function activityFor(o: Options): ActivityOptions {
  const per = (share: number, min: number): number => Math.max(min, Math.round(o.addresses * share));
  return {
    seed: o.seed,
    root: '',
    flagRenames: per(0.2, 3),
    moves: per(0.1, 2),
    newMessages: per(0.2, 3),
    sharedMessages: per(0.05, 1),
    deletedMessages: per(0.1, 2),
    appendedLogs: per(0.1, 2),
    logins: per(0.1, 2),
    newAddresses: 1,
    removedAddresses: 1,
    linked: 'include',
  };
}

function activityCounts(r: ActivityReport): Record<string, number> {
  return {
    renamed: r.renamed.length,
    added: r.added.length,
    deleted: r.deleted.length,
    appended: r.appended.length,
    rewritten: r.rewritten.length,
    touched: r.touched.length,
    newAddresses: r.newAddresses.length,
    removedAddresses: r.removedAddresses.length,
    changedBytes: r.changedBytes,
  };
}

/** The generated tree for these options, from the cache or made now. */
async function cachedTree(o: Options): Promise<{ root: string; stats: RelayTreeStats }> {
  const dir = path.join(o.cacheDir, `tree-a${o.addresses}-m${o.messages}-s${o.seed}`);
  const stamp = path.join(dir, 'stats.json');
  const root = path.join(dir, 'root');
  try {
    return { root, stats: JSON.parse(await fs.readFile(stamp, 'utf8')) as RelayTreeStats };
  } catch {
    await fs.rm(dir, { recursive: true, force: true });
    await fs.mkdir(dir, { recursive: true });
    log(`generating the relay tree (${o.addresses} addresses, ${o.messages} messages each on average, seed ${o.seed}) in ${root}`);
    const stats = await generateRelayTree({ root, addresses: o.addresses, messagesPerAddress: o.messages, seed: o.seed, uidBase: 5000 });
    await fs.writeFile(stamp, JSON.stringify(stats));
    return { root, stats };
  }
}

function log(msg: string): void {
  process.stderr.write(`bench: ${msg}\n`);
}

/** Copy a tree with hard links, modes, owners and nanosecond mtimes (GNU cp -a). */
function copyTree(from: string, to: string): void {
  runOrThrow('cp', ['-a', `${from}/.`, to]);
}

interface Migration {
  dir: string;
  plan: string;
  tls: string;
}

async function initMigration(dir: string, oldAgent: string, newAgent: string): Promise<Migration> {
  await fs.mkdir(dir, { recursive: true });
  const plan = path.join(dir, 'plan.toml');
  const r = await cmmigrate(['init', '--plan', plan, '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3', '--old-agent', oldAgent, '--new-agent', newAgent]);
  if (r.code !== 0) throw new Error(`cmmigrate init failed: ${r.stderr}`);
  return { dir, plan, tls: path.join(dir, '.cmmigrate', 'tls') };
}

class Bench {
  private readonly cleanups: (() => Promise<void> | void)[] = [];
  private readonly agents = new Set<AgentProcess>();
  /** Set by cleanup: start nothing more. */
  private stopped = false;
  readonly results = new Map<string, CaseResult>();
  readonly anomalies: string[] = [];
  /** Other work on the machine during a case: the numbers are less trustworthy. */
  readonly warnings: string[] = [];
  private work = '';
  private src = '';
  private newRoot = '';
  private peer = '';
  private targetFs = '';
  private sshConfig = '';
  private direct!: Migration;
  private delayed!: Migration;
  private oldListen = '';
  private newListen = '';
  private mailboxRoots: string[] = [MAILBOXES];
  private finalRoots: string[] = [];
  private tree!: { root: string; stats: RelayTreeStats };
  private activity: Record<string, number> | undefined;
  /** Other work on the machine skews every number: say how busy it was. */
  private readonly loadStart = os.loadavg().map((x) => Math.round(x * 100) / 100);

  constructor(private readonly o: Options) {
    for (const name of o.cases) {
      const what = CASES[name].what.replace('50 ms RTT', `${2 * o.delayMs} ms RTT`);
      this.results.set(name, { name, group: CASES[name].group, what, seconds: [], median: NaN, ratios: {}, foreignCpuSeconds: [] });
    }
  }

  private has(name: string): boolean {
    return this.results.has(name);
  }

  async setup(): Promise<void> {
    const o = this.o;
    this.tree = await cachedTree(o);
    log(`tree: ${this.tree.stats.files} files, ${(this.tree.stats.bytes / 2 ** 20).toFixed(0)} MiB, ${this.tree.stats.hardlinks} hard links, ${this.tree.stats.addresses} addresses`);
    await fs.mkdir(o.workDir, { recursive: true });
    this.work = await fs.mkdtemp(path.join(o.workDir, 'cmm-bench-'));
    this.cleanups.push(async () => {
      if (o.keep) log(`kept ${this.work}`);
      else await fs.rm(this.work, { recursive: true, force: true });
    });

    // One tmpfs for the source (and the targets with --target tmpfs): the source, at most
    // two targets at once, and room for tmpfs's page rounding of small files.
    const mnt = path.join(this.work, 'tmpfs');
    await fs.mkdir(mnt);
    const sizeMiB = Math.ceil(((o.target === 'tmpfs' ? 4 : 1.5) * this.tree.stats.bytes) / 2 ** 20 + (this.tree.stats.files * 3 * 4096) / 2 ** 20 + 256);
    runOrThrow('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0755`, 'cmm-bench', mnt]);
    this.cleanups.push(async () => {
      // Processes ended by a signal may still hold it for a moment.
      for (let tries = 1; ; tries++) {
        const r = spawnSync('umount', [mnt], { encoding: 'utf8' });
        if (r.status === 0) return;
        if (tries === 20) throw new Error(`umount ${mnt}: ${r.stderr.trim()}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    });
    this.src = path.join(mnt, 'src');
    const targets = o.target === 'tmpfs' ? path.join(mnt, 'targets') : path.join(this.work, 'targets');
    this.newRoot = path.join(targets, 'new');
    this.peer = path.join(targets, 'peer');
    await fs.mkdir(targets, { recursive: true });
    this.targetFs = spawnSync('findmnt', ['-n', '-o', 'FSTYPE', '--target', targets], { encoding: 'utf8' }).stdout?.trim() || 'unknown';
    log(`source on tmpfs ${this.src}; targets on ${this.targetFs} ${targets}`);

    await fs.mkdir(this.src);
    copyTree(this.tree.root, this.src);
    this.finalRoots = ALL_ROOT_PATHS.map((p) => p.slice(1)).filter((p) => existsSync(path.join(this.src, p)));

    const [po, pn] = await Promise.all([freePort('127.0.0.2'), freePort('127.0.0.3')]);
    this.oldListen = `127.0.0.2:${po}`;
    this.newListen = `127.0.0.3:${pn}`;
    this.direct = await initMigration(path.join(this.work, 'direct'), this.oldListen, this.newListen);

    const needsDelay = this.has('delayed-cmmigrate') || this.has('delayed-tar-ssh');
    // The new agent dials the proxy, on the old agent's IP (which its certificate names),
    // another port; the proxy relays to the old agent. The controller dials only the new
    // agent during a sync, so it goes direct.
    const agentProxy = needsDelay ? await this.proxy('127.0.0.2', po) : undefined;
    if (agentProxy) this.delayed = await initMigration(path.join(this.work, 'delayed'), `127.0.0.2:${agentProxy.port}`, this.newListen);

    const needsSsh = [...this.results.keys()].some((c) => c.includes('-ssh'));
    if (needsSsh) {
      const sshd: TestSshd = await startSshd({ aliases: ['bench-unused'] });
      this.cleanups.push(() => sshd.stop());
      const sshProxy = await this.proxy('127.0.0.1', sshd.port);
      this.sshConfig = await writeSshConfig(sshd, this.work, sshProxy.port);
      const probe = await runShell(`ssh -F ${sh(this.sshConfig)} ${SSH_DIRECT} true`);
      if (probe.code !== 0) throw new Error(`ssh to the bench's sshd failed: ${probe.stderr}\n${sshd.log()}`);
    }
  }

  private async proxy(host: string, port: number): Promise<FaultProxy> {
    const p = await startFaultProxy({ listenHost: host, targetHost: host, targetPort: port, delayMs: this.o.delayMs });
    this.cleanups.push(() => p.close());
    return p;
  }

  /** Stop everything the bench started; `interrupted`: also what is running right now (a controller, a pipeline). */
  async cleanup(interrupted = false): Promise<void> {
    this.stopped = true;
    if (interrupted) {
      const agents = new Set([...this.agents].map((a) => a.child.pid));
      for (const pid of descendants()) {
        if (agents.has(pid)) continue;
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          /* gone already */
        }
      }
    }
    for (const a of this.agents) await a.stop().catch(() => undefined);
    this.agents.clear();
    while (this.cleanups.length) {
      const c = this.cleanups.pop()!;
      try {
        await c();
      } catch (err) {
        log(`cleanup: ${(err as Error).message}`);
      }
    }
  }

  async run(): Promise<void> {
    const initial = ['initial-cmmigrate', 'initial-tar', 'initial-tar-ssh', 'initial-rsync-ssh'].filter((c) => this.has(c));
    const delayed = ['delayed-cmmigrate', 'delayed-tar-ssh'].filter((c) => this.has(c));
    for (const group of [initial, delayed]) {
      for (let r = 0; r < this.o.runs; r++) {
        // Rotate the order each round, so no case always runs right after the same other.
        for (const name of [...group.slice(r % group.length), ...group.slice(0, r % group.length)]) await this.initialCase(name, r);
      }
    }
    if (['final-cmmigrate', 'final-quick-verify', 'final-rsync-ssh', 'unchanged-cmmigrate', 'unchanged-rsync-ssh', 'verify'].some((c) => this.has(c))) {
      for (let r = 0; r < this.o.runs; r++) await this.finalRound(r);
    }
    if (this.has('startup-cmmigrate') || this.has('startup-node')) {
      for (let r = 0; r < this.o.runs; r++) this.startupRound(r);
    }
  }

  /** `cmmigrate --version` against `node -e 0`, --startup-runs (20) alternating runs each (startup.ts). */
  private startupRound(run: number): void {
    this.checkRunning();
    const others = foreignTicks();
    const t = controllerStartup(REPO, this.o.startupRuns);
    const foreign = foreignSeconds(others, foreignTicks());
    for (const [name, times] of [['startup-cmmigrate', t.cmmigrate], ['startup-node', t.node]] as const) {
      if (!this.has(name)) continue;
      this.record(name, times.median, run, { foreign: 0, summary: { cpu_seconds_per_run: Math.round(times.cpuSecondsPerRun * 1e4) / 1e4, runs_seconds: times.seconds.map((x) => Math.round(x * 1e4) / 1e4) } });
      const c = this.results.get(name)!;
      c.foreignCpuSeconds[c.foreignCpuSeconds.length - 1] = Math.round(foreign * 100) / 100;
    }  }

  /** Start both agents for one operation: the old one serves the source, the new one the target. */
  private async startAgents(m: Migration): Promise<[AgentProcess, AgentProcess]> {
    this.checkRunning();
    const start = async (listen: string, root: string, side: 'old' | 'new'): Promise<AgentProcess> => {
      // CMMIGRATE_BENCH_AGENT_NODE: another node to start the agents with (a wrapper that adds --cpu-prof, say).
      const a = await startAgentProcess({ listen, root, tlsDir: path.join(m.tls, side), node: process.env.CMMIGRATE_BENCH_AGENT_NODE || undefined });
      this.agents.add(a);
      if (this.stopped) {
        await a.stop();
        this.checkRunning();
      }
      return a;
    };
    return [await start(this.oldListen, this.src, 'old'), await start(this.newListen, this.newRoot, 'new')];
  }

  /** One timed cmmigrate command with fresh agents; throws if it fails. */
  private async cmmigrateOp(m: Migration, args: string[]): Promise<OpResult> {
    return (await this.cmmigrateOps(m, [args]))[0];
  }

  /**
   * Timed cmmigrate commands one after the other, with the same freshly started agents
   * (what `run` does within step 4); throws if one fails. Each result is that command's own.
   */
  private async cmmigrateOps(m: Migration, commands: string[][]): Promise<OpResult[]> {
    return this.withAgents(m, async (op) => {
      const results: OpResult[] = [];
      for (const args of commands) results.push(await op(args));
      return results;
    });
  }

  /**
   * Run `fn` with one pair of freshly started agents, which stay up between its commands, as
   * installed agents do for days before a move: their change journals then cover what
   * happens between two passes (issue 25). `op` times one cmmigrate command.
   */
  private async withAgents<T>(m: Migration, fn: (op: (args: string[]) => Promise<OpResult>) => Promise<T>): Promise<T> {
    const [old, neu] = await this.startAgents(m);
    try {
      return await fn(async (args) => {
        // Each command's own peak RSS: writing 5 to clear_refs resets a process's VmHWM.
        for (const a of [old, neu]) writeFileSync(`/proc/${a.child.pid}/clear_refs`, '5');
        flush();
        const others = foreignTicks();
        const cpu0 = { old: await cpuSeconds(old.child.pid!), new: await cpuSeconds(neu.child.pid!) };
        const t0 = process.hrtime.bigint();
        const r = await cmmigrate([...args, '--plan', m.plan, '--json'], { cwd: m.dir, timeoutMs: 6 * HOUR });
        const t1 = process.hrtime.bigint();
        const seconds = Number(t1 - t0) / 1e9;
        // CMMIGRATE_BENCH_WINDOWS: a file that gets each command's span on the monotonic clock
        // (microseconds, as V8's --cpu-prof stamps its samples), for profile-window.ts.
        if (process.env.CMMIGRATE_BENCH_WINDOWS) {
          appendFileSync(process.env.CMMIGRATE_BENCH_WINDOWS, JSON.stringify({ args, startUs: Number(t0 / 1000n), endUs: Number(t1 / 1000n), pids: { old: old.child.pid, new: neu.child.pid } }) + '\n');
        }
        const foreign = foreignSeconds(others, foreignTicks());
        const rss = { old: await peakRssMiB(old.child.pid!), new: await peakRssMiB(neu.child.pid!) };
        // CPU time is what the agents cost, whatever else the machine was doing meanwhile.
        const cpu = { old: (await cpuSeconds(old.child.pid!)) - cpu0.old, new: (await cpuSeconds(neu.child.pid!)) - cpu0.new };
        let out: Record<string, unknown> = {};
        try {
          out = JSON.parse(r.stdout) as Record<string, unknown>;
        } catch {
          /* reported below */
        }
        if (r.code !== 0 && !(args[0] === 'verify' && r.code === 1)) {
          throw new Error(`cmmigrate ${args.join(' ')} exited with ${r.code}:\n${r.stderr}\nold agent log (tail):\n${old.log().slice(-2000)}\nnew agent log (tail):\n${neu.log().slice(-2000)}`);
        }
        return { seconds, foreign, out, rss, cpu };
      });
    } finally {
      for (const a of [old, neu]) {
        await a.stop();
        this.agents.delete(a);
      }
    }
  }

  private record(name: string, seconds: number, run: number, extra: { foreign: number; rss?: { old: number; new: number }; cpu?: { old: number; new: number }; entries?: number; gib?: number; summary?: Record<string, unknown> }): void {
    const c = this.results.get(name)!;
    c.seconds.push(seconds);
    c.foreignCpuSeconds.push(Math.round(extra.foreign * 100) / 100);
    const share = extra.foreign / (seconds * os.availableParallelism());
    if (share > 0.05) {
      this.warnings.push(`${name} run ${run + 1}: other processes took ${(share * 100).toFixed(0)}% of the CPUs (${extra.foreign.toFixed(1)} CPU-s in ${seconds.toFixed(1)} s)`);
      log(`warning: ${this.warnings[this.warnings.length - 1]}`);
    }
    if (extra.rss) {
      c.peakRssMiB = { old: Math.max(c.peakRssMiB?.old ?? 0, extra.rss.old), new: Math.max(c.peakRssMiB?.new ?? 0, extra.rss.new) };
    }
    if (extra.cpu) (c.agentCpuSeconds ??= []).push({ old: Math.round(extra.cpu.old * 100) / 100, new: Math.round(extra.cpu.new * 100) / 100 });
    // /proc counts CPU in clock ticks (10 ms): per entry, that is exact only over many entries.
    if (extra.cpu && extra.entries) {
      const us = (s: number): number => Math.round((s / extra.entries!) * 1e7) / 10;
      (c.agentCpuMicrosPerEntry ??= []).push({ old: us(extra.cpu.old), new: us(extra.cpu.new), entries: extra.entries });
    }
    if (extra.cpu && extra.gib) (c.agentCpuSecondsPerGiB ??= []).push({ old: Math.round((extra.cpu.old / extra.gib) * 100) / 100, new: Math.round((extra.cpu.new / extra.gib) * 100) / 100 });
    if (extra.summary) c.summary = extra.summary;
    log(`${name} run ${run + 1}/${this.o.runs}: ${seconds.toFixed(2)} s${extra.rss ? ` (agents' peak RSS ${extra.rss.old} / ${extra.rss.new} MiB)` : ''}${extra.cpu ? ` (agents' CPU ${extra.cpu.old.toFixed(2)} / ${extra.cpu.new.toFixed(2)} s)` : ''}`);
  }

  private checkRunning(): void {
    if (this.stopped) throw new Error('the bench was stopped');
  }

  private async shellCase(name: string, cmd: string, run: number): Promise<void> {
    this.checkRunning();
    flush();
    const others = foreignTicks();
    const r = await runShell(cmd);
    const foreign = foreignSeconds(others, foreignTicks());
    if (r.code !== 0) throw new Error(`${name}: \`${cmd}\` exited with ${r.code}:\n${r.stderr}`);
    this.record(name, r.seconds, run, { foreign });
    // tar and rsync leave their writes in the page cache; what making them durable would
    // add (cmmigrate's own flush is inside its time).
    const f = await runShell(`sync -f ${sh(this.peer)}`);
    const c = this.results.get(name)!;
    c.flushSeconds = [...(c.flushSeconds ?? []), f.seconds];
  }

  private async initialCase(name: string, run: number): Promise<void> {
    await resetDir(this.newRoot);
    await resetDir(this.peer);
    switch (name) {
      case 'initial-cmmigrate':
      case 'delayed-cmmigrate': {
        await writeIdentity(this.newRoot, 7000);
        const m = name === 'initial-cmmigrate' ? this.direct : this.delayed;
        const r = await this.cmmigrateOp(m, ['sync', '--phase', 'initial']);
        this.record(name, r.seconds, run, { foreign: r.foreign, rss: r.rss, cpu: r.cpu, gib: Number(r.out.bytes) / 2 ** 30, summary: pick(r.out, SYNC_FIELDS) });
        if (Number(r.out.files) <= 0) this.anomalies.push(`${name} run ${run + 1}: sent ${String(r.out.files)} files`);
        return;
      }
      case 'initial-tar':
        return this.shellCase(name, tarLocal(this.src, this.mailboxRoots, this.peer), run);
      case 'initial-tar-ssh':
        return this.shellCase(name, tarSsh(this.sshConfig, SSH_DIRECT, this.src, this.mailboxRoots, this.peer), run);
      case 'delayed-tar-ssh':
        return this.shellCase(name, tarSsh(this.sshConfig, SSH_DELAYED, this.src, this.mailboxRoots, this.peer), run);
      case 'initial-rsync-ssh':
        return this.shellCase(name, rsyncSsh(this.sshConfig, SSH_DIRECT, this.src, this.mailboxRoots, this.peer, false), run);
      default:
        throw new Error(`no initial case ${name}`);
    }
  }

  /**
   * One round of the final group: the pristine source again, each tool's untimed initial
   * copy of it, the change, then the timed final passes and verify.
   */
  private async finalRound(run: number): Promise<void> {
    const wantCmm = this.has('final-cmmigrate') || this.has('final-quick-verify') || this.has('unchanged-cmmigrate') || this.has('verify');
    const wantRsync = this.has('final-rsync-ssh') || this.has('unchanged-rsync-ssh');
    await resetDir(this.src);
    copyTree(this.tree.root, this.src);
    await resetDir(this.newRoot);
    await resetDir(this.peer);
    if (wantRsync) {
      // What rsync itself leaves after a first pass (locally: untimed preparation).
      runOrThrow('rsync', ['-aHR', ...this.finalRoots.map((r) => `${this.src}/./${r}`), `${this.peer}/`]);
    }
    const change = async (): Promise<Awaited<ReturnType<typeof relayActivity>>> => {
      const report = await relayActivity({ ...activityFor(this.o), root: this.src });
      this.activity = activityCounts(report);
      if (run === 0) log(`change of the source: ${JSON.stringify(this.activity)}`);
      return report;
    };
    const rsyncFinal = rsyncSsh(this.sshConfig, SSH_DIRECT, this.src, this.finalRoots, this.peer, true);
    const rsyncCases = async (): Promise<void> => {
      if (this.has('final-rsync-ssh')) await this.shellCase('final-rsync-ssh', rsyncFinal, run);
      else if (wantRsync) await runShell(rsyncFinal);
    };
    if (!wantCmm) {
      await change();
      await rsyncCases();
      if (this.has('unchanged-rsync-ssh')) await this.shellCase('unchanged-rsync-ssh', rsyncFinal, run);
      return;
    }
    // One pair of agents from the initial copy on, as installed agents run for days before a
    // move: the initial copy and one catch-up pass (what `run` takes before it stops mail)
    // are untimed, then the change, then the timed final pass.
    await writeIdentity(this.newRoot, 7000);
    await this.withAgents(this.direct, async (op) => {
      await op(['sync', '--phase', 'initial']);
      await op(['sync', '--phase', 'initial']);
      // As `run` does at step 3, mail still on: both agents keep their digests, so that the
      // quick verify after the final pass looks only at what changed since.
      if (this.has('final-quick-verify')) await op(['verify', '--quick']);
      const report = await change();
      const r = await op(['sync', '--phase', 'final']);
      const q = this.has('final-quick-verify') ? await op(['verify', '--quick']) : undefined;
      const entries = passEntries(r.out);
      if (run === 0) log(`final pass: ${JSON.stringify(r.out.walks)}`);
      const verifyWalks = (q?.out.roots as { root: string; walk: unknown }[] | undefined)?.map((x) => ({ root: x.root, walk: x.walk }));
      if (run === 0 && verifyWalks) log(`quick verify: ${JSON.stringify(verifyWalks)}`);
      if (this.has('final-cmmigrate')) this.record('final-cmmigrate', r.seconds, run, { foreign: r.foreign, rss: r.rss, cpu: r.cpu, entries, summary: pick(r.out, SYNC_FIELDS) });
      if (q) {
        const both = { old: r.cpu.old + q.cpu.old, new: r.cpu.new + q.cpu.new };
        const rss = { old: Math.max(r.rss.old, q.rss.old), new: Math.max(r.rss.new, q.rss.new) };
        this.record('final-quick-verify', r.seconds + q.seconds, run, { foreign: r.foreign + q.foreign, rss, cpu: both, entries, summary: { sync_seconds: r.seconds, verify_seconds: q.seconds, ...pick(q.out, ['ok', 'differences', 'from_records', 'read']), walks: verifyWalks } });
        if (q.out.ok !== true) this.anomalies.push(`final-quick-verify run ${run + 1}: verify --quick found differences after the final pass: ${JSON.stringify(q.out.first ?? q.out)}`);
      }
      // What a pass that renames instead of resending must send: the changed files, and the
      // roots the initial pass does not carry (DKIM, ACME, spool, extras).
      const expected = report.changedBytes + (await regularBytes(this.src, this.finalRoots.filter((p) => p !== MAILBOXES)));
      const sent = Number(r.out.bytes);
      if (!(sent <= expected * 1.1 + 65_536)) {
        this.anomalies.push(`final-cmmigrate run ${run + 1}: sent ${sent} bytes of content, more than the ${expected} that changed (renamed messages sent again?)`);
      }
      await rsyncCases();
      if (this.has('unchanged-cmmigrate')) {
        const u = await op(['sync', '--phase', 'final']);
        this.record('unchanged-cmmigrate', u.seconds, run, { foreign: u.foreign, rss: u.rss, cpu: u.cpu, entries: passEntries(u.out), summary: pick(u.out, SYNC_FIELDS) });
        if (Number(u.out.files) > 0 || Number(u.out.renamed) > 0 || Number(u.out.deleted) > 0) this.anomalies.push(`unchanged-cmmigrate run ${run + 1}: a pass with nothing changed moved something: ${JSON.stringify(pick(u.out, SYNC_FIELDS))}`);
      }
    });
    if (this.has('unchanged-rsync-ssh')) await this.shellCase('unchanged-rsync-ssh', rsyncFinal, run);
    if (this.has('verify')) {
      const r = await this.cmmigrateOp(this.direct, ['verify']);
      this.record('verify', r.seconds, run, { foreign: r.foreign, rss: r.rss, cpu: r.cpu, summary: pick(r.out, ['ok', 'differences', 'first']) });
      if (r.out.ok !== true) this.anomalies.push(`verify run ${run + 1}: the trees differ after the final pass: ${JSON.stringify(r.out.first ?? r.out)}`);
    }
  }

  report(machine: Machine, started: Date): Record<string, unknown> {
    const cases = [...this.results.values()];
    computeRatios(cases);
    return {
      date: started.toISOString(),
      seconds: (Date.now() - started.getTime()) / 1000,
      command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
      options: { addresses: this.o.addresses, messages: this.o.messages, seed: this.o.seed, runs: this.o.runs, target: this.o.target, delayMs: this.o.delayMs, cases: this.o.cases },
      machine,
      code: gitState(),
      loadavg: { start: this.loadStart, end: os.loadavg().map((x) => Math.round(x * 100) / 100) },
      target: { mode: this.o.target, filesystem: this.targetFs, source: 'tmpfs' },
      tree: this.tree.stats,
      activity: this.activity,
      cases,
      anomalies: this.anomalies,
      warnings: this.warnings,
    };
  }
}

interface OpResult {
  seconds: number;
  foreign: number;
  out: Record<string, unknown>;
  rss: { old: number; new: number };
  cpu: { old: number; new: number };
}

/** The entries a pass decided on: sent, renamed, deleted or found unchanged, of every type. */
const SYNC_FIELDS = ['files', 'bytes', 'renamed', 'deleted', 'unchanged', 'hardlinks', 'seconds', 'wire_bytes', 'walks'];

function pick(o: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => k in o).map((k) => [k, o[k]]));
}

/** Set once a signal started the cleanup, which then ends the process. */
let stopping: Promise<void> | undefined;

async function main(): Promise<void> {
  const started = new Date();
  const o = parseOptions(process.argv.slice(2));
  checkPrerequisites();
  const machine = machineFacts();
  const bench = new Bench(o);
  if (os.loadavg()[0] > 1) log(`the machine is busy (load average ${os.loadavg()[0].toFixed(2)}): other work skews the times`);
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopping) return;
    log(`${sig}: cleaning up`);
    stopping = bench.cleanup(true).finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await bench.setup();
    await bench.run();
  } finally {
    if (!stopping) await bench.cleanup();
  }
  const result = bench.report(machine, started);
  await fs.mkdir(path.dirname(o.out), { recursive: true });
  await fs.writeFile(o.out, JSON.stringify(result, null, 2) + '\n');
  const m = machine;
  console.log(`\n${o.target === 'tmpfs' ? 'target on tmpfs' : 'target on disk'}; ${(result.tree as RelayTreeStats).files} files, ${((result.tree as RelayTreeStats).bytes / 2 ** 20).toFixed(0)} MiB, ${o.runs} run(s) each`);
  console.log(`machine: ${m.nproc} CPUs (${m.cpuModel}), ${(m.memTotalMiB / 1024).toFixed(1)} GiB, Node ${m.node}, ${os.release()}\n`);
  console.log(formatTable(result.cases as CaseResult[]));
  console.log(`\nwritten to ${o.out}`);
  if (bench.warnings.length) console.error(`\nthe machine was busy with other work during ${bench.warnings.length} run(s): see "warnings" in the JSON`);
  if (bench.anomalies.length) {
    console.error(`\nanomalies:\n${bench.anomalies.map((a) => `  - ${a}`).join('\n')}`);
    process.exitCode = 1;
  }
}

main().catch((err) => {
  if (stopping) return; // the signal's cleanup exits
  if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    console.error(`bench: ${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  console.error('bench failed:', err);
  process.exit(1);
});
