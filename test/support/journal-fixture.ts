/**
 * What the change journal's tests share: a private tmpfs per test file (other tests' writes
 * on / would flood the kernel queue and slow the helper), a journal over roots in it, and
 * changes made by another process (foreign) or by this one.
 */
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { expect } from 'vitest';
import { ChangeJournal, type JournalOptions, type JournalPosition, type SinceResult } from '../../agent/journal/journal';
import type { JournalChange } from '../../agent/journal/journal-store';
import type { RootName } from '../../proto';

const run = promisify(execFile);

/** A tmpfs of its own, mounted on a fresh temp directory. */
export async function mountTmpfs(prefix: string): Promise<{ dir: string; unmount: () => Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256m,mode=0755', 'tmpfs', dir]);
  return {
    dir,
    unmount: async () => {
      execFileSync('umount', ['-l', dir]);
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** A log that says nothing. */
export const quietLog = pino({ level: 'silent' });

/** A journal over `roots` (name → abs), its cookies in `state`. */
export async function startJournal(roots: Record<string, string>, state: string, opts: Partial<JournalOptions> = {}): Promise<ChangeJournal> {
  return ChangeJournal.start({
    roots: Object.entries(roots).map(([name, abs]) => ({ name: name as RootName, abs })),
    cookieDir: state,
    log: quietLog,
    // These tests are the agent: their own writes are what they look at.
    ownEvents: 'keep',
    ...opts,
  });
}

/** Run a shell command in another process: its changes are foreign. */
export async function sh(cmd: string, cwd: string): Promise<void> {
  await run('sh', ['-c', cmd], { cwd });
}

/** The changes, failing the test with the reason when the journal says full. */
export function changes(r: SinceResult): JournalChange[] {
  if ('full' in r) throw new Error(`expected changes, got full: ${r.full}`);
  return r.changes;
}

/** The full-walk reason, failing the test when the journal lists changes. */
export function full(r: SinceResult): string {
  if (!('full' in r)) throw new Error(`expected full, got ${r.changes.length} changes: ${JSON.stringify(r.changes.slice(0, 5))}`);
  return r.full;
}

/** Changes as compact strings: 'scope path' (with '*' for foreign). */
export function brief(cs: readonly JournalChange[]): string[] {
  return cs.map((c) => `${c.scope} ${c.path}${c.foreign ? '' : ' (own)'}`);
}

/** Make a change with `act`, sync, and return the changes of `root` since `from`. */
export async function after(j: ChangeJournal, root: RootName, from: JournalPosition, act: () => Promise<unknown>): Promise<{ pos: JournalPosition; list: string[] }> {
  await act();
  const pos = await j.sync();
  return { pos, list: brief(changes(j.changesSince(root, from))) };
}

/** Wait until `cond` holds (polling), or fail after `ms`. */
export async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) expect.fail('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
