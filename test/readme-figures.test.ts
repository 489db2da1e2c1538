/**
 * The README's Reliability section is the text test/bench/reliability.ts made from a real
 * run's log, the same that test/RELIABILITY.md holds: a figure edited by hand in one of them,
 * or a table regenerated into one only, fails here (issue 15, Figures).
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SECTION_AFTER, SECTION_START, withSection } from './bench/reliability';

const ROOT = path.join(__dirname, '..');

describe('README figures', () => {
  it('the README\'s Reliability section is test/RELIABILITY.md, as the script wrote it', async () => {
    const readme = await fs.readFile(path.join(ROOT, 'README.md'), 'utf8');
    const generated = await fs.readFile(path.join(ROOT, 'test', 'RELIABILITY.md'), 'utf8');
    expect(generated.startsWith(SECTION_START)).toBe(true);
    const a = readme.indexOf(SECTION_START);
    const b = readme.indexOf(SECTION_AFTER, a);
    expect(a).toBeGreaterThan(0);
    expect(b).toBeGreaterThan(a);
    expect(readme.slice(a, b)).toBe(generated + '\n');
    // Rewriting the section with what it holds changes nothing, and a changed figure shows.
    expect(withSection(readme, generated)).toBe(readme);
    expect(withSection(readme, generated.replace(/\| (\d+)/, (_, n: string) => `| ${Number(n) + 1}`))).not.toBe(readme);
  });

  it('every row of the table has observations and a passing test behind it', async () => {
    const generated = await fs.readFile(path.join(ROOT, 'test', 'RELIABILITY.md'), 'utf8');
    const rows = generated.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| What') && !l.startsWith('| ---'));
    expect(rows.length).toBeGreaterThan(10);
    for (const r of rows) {
      expect(r).not.toContain('**no observations**');
      expect(r).not.toContain('FAILED in this run');
    }
    expect(generated).not.toContain('This run had problems');
  });
});
