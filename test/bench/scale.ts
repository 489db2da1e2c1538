/**
 * `npm run scale -- --files N`: pass a relay tree of N files (default 1,000,000, small
 * messages) between two agents on loopback, and report each agent's peak RSS (VmHWM) and
 * the time of each step. Not part of `npm test`: it takes many minutes and gigabytes.
 *
 * The tree is generated once into --dir (default /var/tmp/cmmigrate-scale) and reused.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { cmmigrate, freePort, startAgentProcess, type AgentProcess } from '../support/harness';
import { generateRelayTree, writeIdentity } from '../support/relay-tree';
import { AGENT_PEAK_RSS_BYTES, AGENT_PEAK_RSS_MB } from '../support/bounds';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

async function peakRss(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : NaN;
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
  await fs.rm(newRoot, { recursive: true, force: true });
  await fs.mkdir(newRoot, { recursive: true });
  await writeIdentity(newRoot, 7000);

  const [po, pn] = await Promise.all([freePort('127.0.0.2'), freePort('127.0.0.3')]);
  const plan = path.join(dir, 'plan.toml');
  const init = await cmmigrate(['init', '--plan', plan, '--force', '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3', '--old-agent', `127.0.0.2:${po}`, '--new-agent', `127.0.0.3:${pn}`]);
  if (init.code !== 0) throw new Error(init.stderr);
  const tls = path.join(dir, '.cmmigrate', 'tls');
  // --debug: the agents log their memory every 2 s (written to <dir>/old.log, new.log).
  const logArgs = process.argv.includes('--debug') ? ['--log-level', 'debug'] : [];
  const agents: AgentProcess[] = [
    await startAgentProcess({ listen: `127.0.0.2:${po}`, root: oldRoot, tlsDir: path.join(tls, 'old'), extra: logArgs }),
    await startAgentProcess({ listen: `127.0.0.3:${pn}`, root: newRoot, tlsDir: path.join(tls, 'new'), extra: logArgs }),
  ];
  const result: Record<string, unknown> = { files, stats };
  try {
    for (const [label, args] of [
      ['initial', ['sync', '--plan', plan, '--phase', 'initial', '--json']],
      ['final (nothing changed)', ['sync', '--plan', plan, '--phase', 'final', '--json']],
      ['verify', ['verify', '--plan', plan, '--json']],
    ] as const) {
      const r = await timed(label, () => cmmigrate([...args], { timeoutMs: 4 * 3600_000 }));
      if (r.code !== 0) throw new Error(`${label} failed: ${r.stderr}`);
      const out = JSON.parse(r.stdout);
      result[label] = { seconds: out.seconds, files: out.files, bytes: out.bytes, unchanged: out.unchanged, ok: out.ok };
      result[`${label} peak RSS MiB`] = {
        old: Math.round((await peakRss(agents[0].child.pid!)) / 2 ** 20),
        new: Math.round((await peakRss(agents[1].child.pid!)) / 2 ** 20),
      };
      console.log(JSON.stringify(result[`${label} peak RSS MiB`]));
    }
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await fs.writeFile(path.join(dir, 'old.log'), agents[0].log());
    await fs.writeFile(path.join(dir, 'new.log'), agents[1].log());
  }
  console.log(JSON.stringify(result, null, 2));
  // The README's bound holds for every agent in every phase, or the run fails.
  const over = Object.entries(result)
    .filter(([k]) => k.endsWith('peak RSS MiB'))
    .flatMap(([k, v]) => Object.entries(v as Record<string, number>).filter(([, mib]) => mib * 2 ** 20 > AGENT_PEAK_RSS_BYTES).map(([side, mib]) => `${side} agent ${mib} MiB during ${k.replace(' peak RSS MiB', '')}`));
  if (over.length) {
    console.error(`scale: over the README's bound of ${AGENT_PEAK_RSS_MB} MB per agent: ${over.join('; ')}`);
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error('scale run failed:', err);
  process.exit(1);
});
