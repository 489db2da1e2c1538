/**
 * `npm run scale -- --files N`: pass a relay tree of N files (default 1,000,000, small
 * messages) between two agents on loopback, and report each agent's peak RSS (VmHWM) and
 * the time of each step. Then, with nothing changed, `--runs` rounds (default 3) of a final
 * pass against `rsync -aH --delete` over ssh of the same roots (to a copy of its own, made
 * untimed first), alternating, with each agent's CPU per entry; each final pass followed by
 * a timed `verify --quick` (after an untimed one that leaves the agents their digests, as
 * `run` does at step 3), so that the outage's part, pass plus verify, is measured too. Not part of `npm test`: it
 * takes many minutes and gigabytes. It needs root, `rsync` and `openssh-server`.
 *
 * The tree is generated once into --dir (default /var/tmp/cmmigrate-scale) and reused.
 * `--unchanged-only` keeps the copy of an earlier run and runs one untimed final pass, then
 * only the rounds.
 */
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ALL_ROOT_PATHS, REPO, cmmigrate, freePort, startAgentProcess, type AgentProcess } from '../support/harness';
import { generateRelayTree, writeIdentity } from '../support/relay-tree';
import { startSshd } from '../support/sshd';
import { AGENT_PEAK_RSS_BYTES, AGENT_PEAK_RSS_MB } from '../support/bounds';
import { SSH_DIRECT, rsyncSsh, runShell, writeSshConfig } from './peers';
import { cpuSeconds, passEntries, peakRssMiB } from './proc';
import { gitState, machineFacts, median } from './report';
import * as os from 'node:os';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  const r = await fn();
  console.log(`${label}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return r;
}

async function main(): Promise<void> {
  const files = Number(arg('files', '1000000'));
  const base = path.resolve(arg('dir', '/var/tmp/cmmigrate-scale'));
  const perAddress = 200;
  const addresses = Math.max(1, Math.round(files / (perAddress * 1.25)));
  const dir = path.join(base, `tree-${files}`);
  const oldRoot = path.join(dir, 'old');
  const newRoot = path.join(dir, 'new');
  const stamp = path.join(dir, 'generated.json');
  let stats: unknown;
  try {
    stats = JSON.parse(await fs.readFile(stamp, 'utf8'));
    console.log(`reusing ${oldRoot}`);
  } catch {
    await fs.rm(dir, { recursive: true, force: true });
    await fs.mkdir(dir, { recursive: true });
    stats = await timed(`generate ${addresses} addresses`, () => generateRelayTree({ root: oldRoot, addresses, messagesPerAddress: perAddress, tinyMessages: true, seed: 42 }));
    await fs.writeFile(stamp, JSON.stringify(stats));
  }
  console.log('tree:', stats);
  // --unchanged-only: the copy of an earlier run stays; only the rounds with nothing changed run.
  const unchangedOnly = process.argv.includes('--unchanged-only');
  const plan = path.join(dir, 'plan.toml');
  let po: number;
  let pn: number;
  if (unchangedOnly) {
    const text = await fs.readFile(plan, 'utf8').catch(() => {
      throw new Error(`--unchanged-only needs the copy of an earlier run in ${dir}: run without it first`);
    });
    [po, pn] = [...text.matchAll(/^agent = "127\.0\.0\.[23]:(\d+)"/gm)].map((m) => Number(m[1]));
  } else {
    await fs.rm(newRoot, { recursive: true, force: true });
    await fs.mkdir(newRoot, { recursive: true });
    await writeIdentity(newRoot, 7000);
    [po, pn] = await Promise.all([freePort('127.0.0.2'), freePort('127.0.0.3')]);
    const init = await cmmigrate(['init', '--plan', plan, '--force', '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3', '--old-agent', `127.0.0.2:${po}`, '--new-agent', `127.0.0.3:${pn}`]);
    if (init.code !== 0) throw new Error(init.stderr);
  }
  const tls = path.join(dir, '.cmmigrate', 'tls');
  // --debug: the agents log their memory every 2 s (written to <dir>/old.log, new.log).
  const logArgs = process.argv.includes('--debug') ? ['--log-level', 'debug'] : [];
  // --no-journal: both agents without their change journals (what the journal costs in memory).
  if (process.argv.includes('--no-journal')) logArgs.push('--no-journal');
  const agents: AgentProcess[] = [
    await startAgentProcess({ listen: `127.0.0.2:${po}`, root: oldRoot, tlsDir: path.join(tls, 'old'), extra: logArgs }),
    await startAgentProcess({ listen: `127.0.0.3:${pn}`, root: newRoot, tlsDir: path.join(tls, 'new'), extra: logArgs }),
  ];
  const started = new Date();
  const loadStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const result: Record<string, unknown> = { kind: 'scale', date: started.toISOString(), command: `npm run scale -- ${process.argv.slice(2).join(' ')}`.trim(), machine: machineFacts(), code: gitState(), files, stats };
  try {
    const phases = [
      ['initial', ['sync', '--plan', plan, '--phase', 'initial', '--json']],
      ['final (nothing changed)', ['sync', '--plan', plan, '--phase', 'final', '--json']],
      ['verify', ['verify', '--plan', plan, '--json']],
    ] as const;
    // With the copy kept, one final pass (untimed) settles what an earlier build left.
    for (const [label, args] of unchangedOnly ? ([['final (settling the kept copy)', phases[1][1]]] as const) : phases) {
      const r = await timed(label, () => cmmigrate([...args], { timeoutMs: 4 * 3600_000 }));
      if (r.code !== 0) throw new Error(`${label} failed: ${r.stderr}`);
      const out = JSON.parse(r.stdout);
      result[label] = { seconds: out.seconds, files: out.files, bytes: out.bytes, unchanged: out.unchanged, ok: out.ok };
      result[`${label} peak RSS MiB`] = {
        old: Math.round((await peakRssMiB(agents[0].child.pid!))),
        new: Math.round((await peakRssMiB(agents[1].child.pid!))),
      };
      console.log(JSON.stringify(result[`${label} peak RSS MiB`]));
    }
    result['nothing changed'] = await unchangedRounds(Number(arg('runs', '3')), plan, oldRoot, path.join(dir, 'rsync'), agents);
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await fs.writeFile(path.join(dir, 'old.log'), agents[0].log());
    await fs.writeFile(path.join(dir, 'new.log'), agents[1].log());
  }
  result.loadavg = { start: loadStart, end: os.loadavg().map((x) => Math.round(x * 100) / 100) };
  result.seconds = (Date.now() - started.getTime()) / 1000;
  console.log(JSON.stringify(result, null, 2));
  const out = path.resolve(arg('out', path.join(REPO, 'bench-results', `scale-${started.toISOString().replace(/[:.]/g, '-').slice(0, 19)}-${files}.json`)));
  await fs.mkdir(path.dirname(out), { recursive: true });
  await fs.writeFile(out, JSON.stringify(result, null, 2) + '\n');
  console.log(`written to ${out}`);
  // The README's bound holds for every agent in every phase, or the run fails.
  const over = Object.entries(result)
    .filter(([k]) => k.endsWith('peak RSS MiB'))
    .flatMap(([k, v]) => Object.entries(v as Record<string, number>).filter(([, mib]) => mib * 2 ** 20 > AGENT_PEAK_RSS_BYTES).map(([side, mib]) => `${side} agent ${mib} MiB during ${k.replace(' peak RSS MiB', '')}`));
  if (over.length) {
    console.error(`scale: over the README's bound of ${AGENT_PEAK_RSS_MB} MB per agent: ${over.join('; ')}`);
    process.exitCode = 1;
  }
}

/**
 * Nothing changed: rounds of `cmmigrate sync --phase final` (the running agents; their CPU
 * from /proc) against `rsync -aH --delete` over ssh into a copy of its own, alternating.
 */
async function unchangedRounds(runs: number, plan: string, oldRoot: string, rsyncRoot: string, agents: AgentProcess[]): Promise<Record<string, unknown>> {
  const roots = ALL_ROOT_PATHS.map((p) => p.slice(1)).filter((p) => existsSync(path.join(oldRoot, p)));
  const sshd = await startSshd({ aliases: ['scale-unused'] });
  try {
    const config = await writeSshConfig(sshd, path.dirname(rsyncRoot), sshd.port);
    await fs.mkdir(rsyncRoot, { recursive: true });
    const first = await timed('rsync -aH over ssh (untimed copy for the rounds)', () => runShell(rsyncSsh(config, SSH_DIRECT, oldRoot, roots, rsyncRoot, false), 4 * 3600_000));
    if (first.code !== 0) throw new Error(`rsync failed: ${first.stderr}`);
    // As `run` does at step 3: both agents keep their digests, so that each round's quick
    // verify looks only at what the change journals say changed (issue 25).
    const prime = await timed('verify --quick (untimed: the digests the rounds start from)', () => cmmigrate(['verify', '--plan', plan, '--quick', '--json'], { timeoutMs: 4 * 3600_000 }));
    if (prime.code !== 0) throw new Error(`verify --quick failed: ${prime.stderr}${prime.stdout}`);
    const ours: number[] = [];
    const quick: number[] = [];
    const walks: unknown[] = [];
    const theirs: number[] = [];
    const cpu: { old: number; new: number }[] = [];
    const verifyCpu: { old: number; new: number }[] = [];
    let entries = 0;
    for (let i = 0; i < runs; i++) {
      const c0 = await Promise.all(agents.map((a) => cpuSeconds(a.child.pid!)));
      const r = await cmmigrate(['sync', '--plan', plan, '--phase', 'final', '--json'], { timeoutMs: 4 * 3600_000 });
      const c1 = await Promise.all(agents.map((a) => cpuSeconds(a.child.pid!)));
      if (r.code !== 0) throw new Error(`final pass failed: ${r.stderr}`);
      const out = JSON.parse(r.stdout) as Record<string, unknown>;
      if (Number(out.files) > 0 || Number(out.deleted) > 0 || Number(out.renamed) > 0) throw new Error(`a pass with nothing changed moved something: ${r.stdout}`);
      entries = passEntries(out);
      ours.push(Number(out.seconds));
      const t0 = Date.now();
      const v = await cmmigrate(['verify', '--plan', plan, '--quick', '--json'], { timeoutMs: 4 * 3600_000 });
      quick.push((Date.now() - t0) / 1000);
      if (v.code !== 0) throw new Error(`verify --quick failed: ${v.stderr}${v.stdout}`);
      walks.push({ pass: out.walks, verify: (JSON.parse(v.stdout) as { roots: { root: string; walk: unknown }[] }).roots.map((x) => ({ root: x.root, walk: x.walk })) });
      const c2 = await Promise.all(agents.map((a) => cpuSeconds(a.child.pid!)));
      cpu.push({ old: c1[0] - c0[0], new: c1[1] - c0[1] });
      verifyCpu.push({ old: c2[0] - c1[0], new: c2[1] - c1[1] });
      const rs = await runShell(rsyncSsh(config, SSH_DIRECT, oldRoot, roots, rsyncRoot, true), 4 * 3600_000);
      if (rs.code !== 0) throw new Error(`rsync --delete failed: ${rs.stderr}`);
      theirs.push(rs.seconds);
      console.log(`round ${i + 1}/${runs}: cmmigrate final ${ours[i].toFixed(2)} s (agents' CPU ${cpu[i].old.toFixed(2)} / ${cpu[i].new.toFixed(2)} s), verify --quick ${quick[i].toFixed(2)} s (agents' CPU ${verifyCpu[i].old.toFixed(2)} / ${verifyCpu[i].new.toFixed(2)} s), rsync -aH --delete ${rs.seconds.toFixed(1)} s`);
    }
    const perEntry = (s: number): number => Math.round((s / entries) * 1e7) / 10;
    const summary = {
      entries,
      cmmigrate_seconds: ours,
      rsync_seconds: theirs.map((x) => Math.round(x * 100) / 100),
      ratio_of_medians: Math.round((median(ours) / median(theirs)) * 100) / 100,
      quick_verify_seconds: quick.map((x) => Math.round(x * 1000) / 1000),
      // The outage's share of cmmigrate: the final pass and the quick verify after it.
      final_and_quick_verify_ratio: Math.round((median(ours.map((x, i) => x + quick[i])) / median(theirs)) * 1000) / 1000,
      verify_agent_cpu_seconds: verifyCpu.map((c) => ({ old: Math.round(c.old * 100) / 100, new: Math.round(c.new * 100) / 100 })),
      walks: walks[walks.length - 1],
      agent_cpu_us_per_entry: { old: median(cpu.map((c) => perEntry(c.old))), new: median(cpu.map((c) => perEntry(c.new))) },
    };
    console.log(`nothing changed, ${entries} entries: cmmigrate ${median(ours).toFixed(2)} s, rsync ${median(theirs).toFixed(1)} s (medians of ${runs}): ${summary.ratio_of_medians}× rsync; with the quick verify ${summary.final_and_quick_verify_ratio}×; agents' CPU per entry ${summary.agent_cpu_us_per_entry.old} / ${summary.agent_cpu_us_per_entry.new} µs (old / new)`);
    return summary;
  } finally {
    await sshd.stop();
  }
}

main().catch((err) => {
  console.error('scale run failed:', err);
  process.exit(1);
});
