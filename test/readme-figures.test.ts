/**
 * The figures of docs/ are what the scripts made from real runs (the README links to them).
 * docs/reliability.md's Reliability section is the text test/bench/reliability.ts made from
 * a real run's log: a figure edited by hand, or a row without observations or with a failed
 * test behind it, fails here (issue 15, Figures). The same holds for docs/performance.md's
 * generated figures and the bench results in test/bench/results/ (issue 13), and for the
 * bridge's speed figures and the bridge bench's result kept there. The README's own sizes
 * (the demo relay, the agent bundle) are checked at the end.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BRIDGE_END, BRIDGE_START, bridgeLines, bridgeSection, readBridgeResult, withBridge } from './bench/bridge-figures';
import { PERF_END, PERF_START, PERFORMANCE_DOC, performanceSection, readResults, targetRows, withPerformance } from './bench/performance';
import { SECTION_AFTER, SECTION_START, withSection } from './bench/reliability';
import { readmeBlock } from './bench/readme-block';
import { generateRelayTree } from './support/relay-tree';
import { DEMO_TREE } from './support/rehearsal';

const ROOT = path.join(__dirname, '..');
const RELIABILITY_DOC = path.join(ROOT, 'docs', 'reliability.md');

/** docs/reliability.md's generated section: from its heading up to the paragraph after the table. */
function reliabilitySection(doc: string): string {
  const a = doc.indexOf(SECTION_START);
  const b = doc.indexOf(SECTION_AFTER, a);
  expect(a).toBeGreaterThan(0);
  expect(b).toBeGreaterThan(a);
  // The script's text ends with a newline, and one empty line parts it from the paragraph.
  expect(doc.slice(a, b).endsWith('\n\n')).toBe(true);
  return doc.slice(a, b - 1);
}

describe('README figures', () => {
  it('docs/reliability.md\'s Reliability section is where and as the script writes it', async () => {
    const doc = await fs.readFile(RELIABILITY_DOC, 'utf8');
    const generated = reliabilitySection(doc);
    expect(generated.startsWith(SECTION_START)).toBe(true);
    // Rewriting the section with what it holds changes nothing, and a changed figure shows.
    expect(withSection(doc, generated)).toBe(doc);
    expect(withSection(doc, generated.replace(/\| (\d+)/, (_, n: string) => `| ${Number(n) + 1}`))).not.toBe(doc);
  });

  it('every row of the table has observations and a passing test behind it', async () => {
    const generated = reliabilitySection(await fs.readFile(RELIABILITY_DOC, 'utf8'));
    const rows = generated.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| What') && !l.startsWith('| ---'));
    expect(rows.length).toBeGreaterThan(10);
    for (const r of rows) {
      expect(r).not.toContain('**no observations**');
      expect(r).not.toContain('FAILED in this run');
    }
    expect(generated).not.toContain('This run had problems');
  });
});

describe('README performance figures', () => {
  it('the generated part of docs/performance.md is what test/bench/results/ makes', async () => {
    const readme = await fs.readFile(PERFORMANCE_DOC, 'utf8');
    const results = readResults();
    expect(results.length).toBeGreaterThan(0);
    const text = performanceSection(results);
    expect(readmeBlock(readme, PERF_START, PERF_END)).toBe(text);
    expect(withPerformance(readme, text)).toBe(readme);
    // A figure changed in a result file, or a result file left out, shows.
    const first = results[results.length - 1];
    const bumped = JSON.parse(JSON.stringify(first)) as typeof first;
    if (bumped.kind === 'scale') bumped.files += 1;
    else bumped.cases[0].seconds[0] += 1;
    expect(performanceSection([...results.slice(0, -1), bumped])).not.toBe(text);
    if (results.length > 1) expect(performanceSection(results.slice(1))).not.toBe(text);
  });

  it('each target row says met only when the measured figure is within its target', () => {
    const rows = targetRows(readResults());
    const measured = rows.filter((r) => r.measured !== undefined);
    expect(measured.length).toBeGreaterThan(0);
    for (const r of measured) {
      const value = Number(/^([\d.]+)/.exec(r.measured!)![1]);
      const limit = Number(/([\d.]+)/.exec(r.target)![1]);
      const inMiB = r.measured!.includes('MiB') ? (value * 2 ** 20) / 1e6 : value;
      expect(r.met, `${r.what}: ${r.measured} against ${r.target}`).toBe(inMiB <= limit);
    }
  });
});

describe('README bridge figures', () => {
  it('the bridge\'s speed figures are what test/bench/results/bridge-*.json makes', async () => {
    const readme = await fs.readFile(PERFORMANCE_DOC, 'utf8');
    const result = readBridgeResult();
    const text = bridgeSection(result);
    expect(readmeBlock(readme, BRIDGE_START, BRIDGE_END)).toBe(text);
    expect(withBridge(readme, text)).toBe(readme);
    // The block holds the bench's own console lines, each figure of the result in them.
    for (const line of bridgeLines(result)) expect(text).toContain(line);
    expect(text).toContain(result.agentCpuSecondsPerGiB.toFixed(2));
    // A figure changed in the result file shows.
    const bumped = JSON.parse(JSON.stringify(result)) as typeof result;
    bumped.throughputMBps.uploadBridged.median += 10;
    expect(bridgeSection(bumped)).not.toBe(text);
  });

  it('the prose around the bridge figures types none of its own', async () => {
    const readme = await fs.readFile(PERFORMANCE_DOC, 'utf8');
    const a = readme.indexOf('**Speed.**');
    // The paragraph, the figures and the note after them: up to the next section, or the page's end.
    const next = readme.indexOf('\n## ', a);
    const end = next < 0 ? readme.length : next;
    expect(a).toBeGreaterThan(0);
    const generated = readmeBlock(readme.slice(a, end), BRIDGE_START, BRIDGE_END);
    expect(generated).toBeDefined();
    const prose = readme.slice(a, end).replace(generated!, '');
    // Options and the path of /proc/<pid>/stat aside, no number of a measurement.
    expect(prose.replace(/--rounds 3\s+--gib 1/, '').match(/\d+(\.\d+)?\s*(ms|us|µs|MB\/s|s per GiB|%)|load average \d/g)).toBeNull();
  });
});

describe('README sizes', () => {
  const text = (s: string): string => s.replace(/\s+/g, ' ');

  it('the demo relay is as big as the README says', async () => {
    const readme = text(await fs.readFile(path.join(ROOT, 'README.md'), 'utf8'));
    const m = /old relay \((\d+) addresses, about ([\d,]+) files, (\d+) MiB/.exec(readme);
    expect(m, 'the README states the demo relay\'s size').not.toBeNull();
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmmigrate-demo-size-'));
    try {
      const s = await generateRelayTree({ root: dir, ...DEMO_TREE });
      expect(Number(m![1])).toBe(DEMO_TREE.addresses);
      const files = Number(m![2].replace(/,/g, ''));
      expect(Math.abs(files - s.files) / s.files, `about ${files} files, generated ${s.files}`).toBeLessThan(0.05);
      expect(Number(m![3])).toBe(Math.round(s.bytes / 2 ** 20));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('the shipped agent is as big as the README says', async () => {
    const readme = text(await fs.readFile(path.join(ROOT, 'README.md'), 'utf8'));
    const m = /`dist\/cmmigrate-agent\.js`, about (\d+) MiB/.exec(readme);
    expect(m).not.toBeNull();
    const size = (await fs.stat(path.join(ROOT, 'dist', 'cmmigrate-agent.js'))).size;
    expect(Number(m![1])).toBe(Math.round(size / 2 ** 20));
  });
});
