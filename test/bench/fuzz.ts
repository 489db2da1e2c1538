/**
 * `npm run fuzz`: the fuzzers of test/fuzz.test.ts, for longer and over several seeds.
 *   npm run fuzz -- [seconds per seed and receiver fuzzer, default 60] [first seed, default 1000] [seeds, default 3]
 * Each seed runs the receiver's fuzzer with unpacked listings, then with packed ones, for
 * that many seconds each, then the plan fuzzer.
 * Prints the figures as JSON lines and exits 1 if any run found a problem (with its seed:
 * CMM_FUZZ_SEED=<seed> npx vitest run --dir test fuzz.test replays the short form).
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fuzzPackedPull, fuzzPull } from '../support/fuzz-pull';
import { fuzzPlan } from '../support/fuzz-plan';
import { cmmigrate } from '../support/harness';

async function main(): Promise<void> {
  const [seconds = 60, first = 1000, seeds = 3] = process.argv.slice(2).map(Number);
  let problems = 0;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-fuzz-run-'));
  try {
    const plan = path.join(dir, 'plan.toml');
    const init = await cmmigrate(['init', '--plan', plan, '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3']);
    if (init.code !== 0) throw new Error(init.stderr);
    for (let seed = first; seed < first + seeds; seed++) {
      const p = await fuzzPull({ seed, seconds, log: (s) => console.error(s) });
      console.log(JSON.stringify({ fuzz: 'pull', seed, seconds, ...p, failures: p.failures.length }));
      const k = await fuzzPackedPull({ seed, seconds, log: (s) => console.error(s) });
      console.log(JSON.stringify({ fuzz: 'packed', seed, seconds, ...k, failures: k.failures.length }));
      const q = await fuzzPlan({ seed, planFile: plan, iterations: 20_000 });
      console.log(JSON.stringify({ fuzz: 'plan', seed, ...q, failures: q.failures.length }));
      for (const f of q.failures.slice(0, 5)) console.error(f);
      problems += p.failures.length + k.failures.length + q.failures.length;
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
  process.exitCode = problems ? 1 : 0;
}

void main();
