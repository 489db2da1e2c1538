/**
 * `npm run bench` end to end on a tiny tree (issue 6), so that the bench keeps working:
 * every case runs once, including the 50 ms link, and the JSON has a time for each and the
 * ratios of cmmigrate to its peers. It asserts no speed: that is what the bench is for.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, runNode } from './support/harness';

const BENCH = path.join(REPO, 'dist-test', 'test', 'bench', 'bench.js');

const PEERS: Record<string, string[]> = {
  'initial-cmmigrate': ['initial-tar', 'initial-tar-ssh', 'initial-rsync-ssh'],
  'delayed-cmmigrate': ['delayed-tar-ssh'],
  'final-cmmigrate': ['final-rsync-ssh'],
  'final-quick-verify': ['final-rsync-ssh'],
  'unchanged-cmmigrate': ['unchanged-rsync-ssh'],
  'startup-cmmigrate': ['startup-node'],
};
const ALL_CASES = ['initial-cmmigrate', 'initial-tar', 'initial-tar-ssh', 'initial-rsync-ssh', 'delayed-cmmigrate', 'delayed-tar-ssh', 'final-cmmigrate', 'final-quick-verify', 'final-rsync-ssh', 'unchanged-cmmigrate', 'unchanged-rsync-ssh', 'verify', 'startup-cmmigrate', 'startup-node'];

interface BenchCase {
  name: string;
  seconds: number[];
  median: number;
  ratios: Record<string, number>;
  peakRssMiB?: { old: number; new: number };
  summary?: Record<string, unknown>;
}

describe('npm run bench', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-bench-test-'));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('measures every case on a tiny tree and writes medians and ratios as JSON', async () => {
    const out = path.join(dir, 'result.json');
    const r = await runNode(BENCH, ['--addresses', '10', '--messages', '10', '--runs', '1', '--startup-runs', '3', '--out', out, '--cache-dir', path.join(dir, 'cache'), '--work-dir', dir], { timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('| initial-cmmigrate');

    const result = JSON.parse(await fs.readFile(out, 'utf8')) as { cases: BenchCase[]; anomalies: string[]; machine: { nproc: number; cpuModel: string; node: string }; tree: { files: number } };
    expect(result.anomalies).toEqual([]);
    expect(result.machine.nproc).toBeGreaterThan(0);
    expect(result.machine.node).toBe(process.version);
    expect(result.tree.files).toBeGreaterThan(100);
    expect(result.cases.map((c) => c.name)).toEqual(ALL_CASES);
    for (const c of result.cases) {
      expect(c.seconds, c.name).toHaveLength(1);
      expect(c.seconds[0], c.name).toBeGreaterThan(0);
      expect(c.median, c.name).toBe(c.seconds[0]);
    }
    const byName = new Map(result.cases.map((c) => [c.name, c]));
    for (const [name, peers] of Object.entries(PEERS)) {
      const c = byName.get(name)!;
      expect(Object.keys(c.ratios).sort(), name).toEqual([...peers].sort());
      for (const p of peers) expect(c.ratios[p], `${name} / ${p}`).toBeCloseTo(c.median / byName.get(p)!.median, 9);
    }
    for (const name of ['initial-cmmigrate', 'delayed-cmmigrate', 'final-cmmigrate', 'final-quick-verify', 'unchanged-cmmigrate', 'verify']) {
      expect(byName.get(name)!.peakRssMiB!.old, name).toBeGreaterThan(0);
      expect(byName.get(name)!.peakRssMiB!.new, name).toBeGreaterThan(0);
    }
    expect(byName.get('verify')!.summary!.ok).toBe(true);
    expect(byName.get('final-quick-verify')!.summary!.ok).toBe(true);
    expect(Number(byName.get('final-quick-verify')!.summary!.from_records)).toBeGreaterThan(0);
    // The bench leaves no mount and no work directory behind.
    expect((await fs.readdir(dir)).sort()).toEqual(['cache', 'result.json']);
    expect(await fs.readFile('/proc/mounts', 'utf8')).not.toContain(dir);
  }, 320_000);
});
