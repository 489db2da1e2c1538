/**
 * The change journal's Python helper travels with the code that runs it: inlined as a
 * string by the agent bundle's esbuild settings (agent/build/bundle-agent.js, bundleDefines),
 * and read from agent/journal/ by the tsc output in dist/, which does not copy .py files.
 * Both start a real helper. (The agent bundle carries the journal only where the agent
 * uses it, else esbuild leaves it out; so the journal is also bundled here on its own,
 * with the same define.)
 */
import * as esbuild from 'esbuild';
import { existsSync, readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type * as JournalModule from '../agent/journal/journal';
import { brief, changes, mountTmpfs, quietLog, sh } from './support/journal-fixture';

const REPO = path.join(__dirname, '..');
const HELPER = readFileSync(path.join(REPO, 'agent/journal/fanotify-helper.py'), 'utf8');
const nodeRequire = createRequire(__filename);

let tmp: { dir: string; unmount: () => Promise<void> };

beforeAll(async () => {
  tmp = await mountTmpfs('cmm-journal-bundle-');
  await fs.mkdir(path.join(tmp.dir, 'mail/u/new'), { recursive: true });
});

afterAll(async () => {
  await tmp?.unmount();
});

/** Start a journal from a loaded module, make a file `name`, and return what it recorded. */
async function journalFrom(mod: typeof JournalModule, name: string): Promise<string[]> {
  const j = await mod.ChangeJournal.start({ roots: [{ name: 'mailboxes', abs: path.join(tmp.dir, 'mail') }], cookieDir: path.join(tmp.dir, 'state'), log: quietLog });
  try {
    expect(j.status().ended).toBeUndefined();
    const from = await j.sync();
    await sh(`printf m > u/new/${name}`, path.join(tmp.dir, 'mail'));
    await j.sync();
    return brief(changes(j.changesSince('mailboxes', from)));
  } finally {
    await j.close();
  }
}

describe('the journal helper', () => {
  it('is inlined by the agent bundle settings, and runs from a bundle with no .py beside it', async () => {
    const { bundleDefines } = nodeRequire('../agent/build/bundle-agent.js') as { bundleDefines: () => Record<string, string> };
    const out = path.join(tmp.dir, 'bundle', 'journal.js');
    await esbuild.build({
      entryPoints: [path.join(REPO, 'agent/journal/journal.ts')],
      outfile: out,
      bundle: true,
      platform: 'node',
      target: 'node18.19',
      format: 'cjs',
      define: bundleDefines(),
      logLevel: 'warning',
    });
    const text = await fs.readFile(out, 'utf8');
    // Every line of the helper that no string escaping can change is in the bundle.
    const lines = HELPER.split('\n').filter((l) => l.trim().length > 20 && !/["'\\`$]/.test(l));
    expect(lines.length).toBeGreaterThan(100);
    expect(lines.filter((l) => !text.includes(l))).toEqual([]);
    expect(await fs.readdir(path.dirname(out))).toEqual(['journal.js']);
    expect(await journalFrom(nodeRequire(out) as typeof JournalModule, 'bundled')).toEqual(['entry u/new', 'entry u/new/bundled']);
  });

  it('is in the agent bundle, dist/cmmigrate-agent.js, wherever the bundle carries the journal', async () => {
    const bundle = path.join(REPO, 'dist/cmmigrate-agent.js');
    expect(existsSync(bundle), 'dist/ is built (npm run build)').toBe(true);
    const text = await fs.readFile(bundle, 'utf8');
    // 'cmmigrate-journal' is the helper's first argument in journal-source.ts: the journal is in.
    if (!text.includes("'cmmigrate-journal'") && !text.includes('"cmmigrate-journal"')) return;
    const lines = HELPER.split('\n').filter((l) => l.trim().length > 20 && !/["'\\`$]/.test(l));
    expect(lines.filter((l) => !text.includes(l))).toEqual([]);
  });

  it('is found by the tsc output in dist/, which has no copy of it', async () => {
    const compiled = path.join(REPO, 'dist/agent/journal/journal.js');
    expect(existsSync(compiled), 'dist/ is built (npm run build)').toBe(true);
    expect(existsSync(path.join(REPO, 'dist/agent/journal/fanotify-helper.py'))).toBe(false);
    expect(await journalFrom(nodeRequire(compiled) as typeof JournalModule, 'compiled')).toEqual(['entry u/new', 'entry u/new/compiled']);
  });
});
