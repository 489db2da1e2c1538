/**
 * Fuzzing, short and seeded, in every CI run (issue 7): the receiving side's listing and
 * tar parsing (test/support/fuzz-pull.ts), unpacked and packed as the sender sends it since
 * protocol 2 (test/support/fuzz-packed.ts), the plan file and the command line
 * (test/support/fuzz-plan.ts). `npm run fuzz` runs the same for longer with other seeds.
 * CMM_FUZZ_SEED picks the seed (default 1) to replay a failure.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reportFigure } from './support/fault-checks';
import { fuzzPackedPull, fuzzPull } from './support/fuzz-pull';
import { fuzzCli, fuzzPlan } from './support/fuzz-plan';
import { cmmigrate } from './support/harness';

const SEED = Number(process.env.CMM_FUZZ_SEED ?? 1);

describe('fuzz', () => {
  let dir: string;
  let plan: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-fuzzplan-'));
    plan = path.join(dir, 'plan.toml');
    const r = await cmmigrate(['init', '--plan', plan, '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3', '--old-agent', '127.0.0.2:1', '--new-agent', '127.0.0.3:1']);
    expect(r.code, r.stderr).toBe(0);
  }, 30_000);
  afterAll(async () => {
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('the receiver parses damaged listings and tar streams into success or a CmError, never more', async () => {
    const f = await fuzzPull({ seed: SEED, seconds: 4, minIterations: 200 });
    reportFigure('fuzz-pull', { seed: SEED, iterations: f.iterations, succeeded: f.succeeded, refused: f.refused, undecodable: f.undecodable, codes: Object.keys(f.codes).length, failures: f.failures.length });
    console.log(JSON.stringify(f.codes));
    expect(f.failures).toEqual([]);
    expect(f.succeeded).toBeGreaterThan(0);
    expect(f.refused).toBeGreaterThan(f.iterations / 4);
  }, 60_000);

  it('the receiver unpacks damaged packed listings into success or a CmError, never more', async () => {
    const f = await fuzzPackedPull({ seed: SEED, seconds: 4, minIterations: 200 });
    reportFigure('fuzz-packed', { seed: SEED, iterations: f.iterations, succeeded: f.succeeded, refused: f.refused, protocol: f.codes['wire.protocol'] ?? 0, codes: Object.keys(f.codes).length, failures: f.failures.length });
    console.log(JSON.stringify(f.codes), JSON.stringify(f.packed));
    expect(f.failures).toEqual([]);
    expect(f.succeeded).toBeGreaterThan(0);
    // Most damaged packed bytes are refused by the unpacking itself, as the sender's protocol error.
    expect(f.codes['wire.protocol']).toBeGreaterThan(f.iterations / 4);
    // Every kind of damage was tried.
    expect(Object.keys(f.packed!).sort()).toEqual(['both', 'byte', 'cut', 'entries', 'extend', 'flip', 'length', 'none', 'split', 'varint']);
  }, 60_000);

  it('damaged plan files load or are refused with a CmError', async () => {
    const f = await fuzzPlan({ seed: SEED, planFile: plan, iterations: 1500 });
    reportFigure('fuzz-plan', { seed: SEED, iterations: f.iterations, accepted: f.accepted, refused: f.refused, failures: f.failures.length });
    expect(f.failures.slice(0, 3)).toEqual([]);
    expect(f.refused).toBeGreaterThan(f.iterations / 4);
  }, 60_000);

  it('random command lines end with a documented exit code and a message', async () => {
    const broken = path.join(dir, 'broken.toml');
    await fs.writeFile(broken, '[old\nagent = 1\n');
    const f = await fuzzCli({ seed: SEED, iterations: 24, plans: [plan, broken, path.join(dir, 'missing.toml')], cwd: dir });
    reportFigure('fuzz-cli', { seed: SEED, iterations: f.iterations, accepted: f.accepted, refused: f.refused, failures: f.failures.length });
    expect(f.failures).toEqual([]);
    expect(f.refused).toBeGreaterThan(0);
  }, 120_000);
});
