/**
 * What must hold on the new host after any fault: no torn file (a committed file that is a
 * part of its source), no temp file once a pass succeeded, no message twice in a maildir,
 * and trees that `cmmigrate verify` and a snapshot of both roots call equal.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import type { Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { expect } from 'vitest';
import { ALL_ROOT_PATHS, CONTROLLER_CLI, findTempFiles, TMP_PREFIX, walkTree, type CliResult, type Migration } from './harness';
import { diffSnapshots, snapshotTree } from './tree-snapshot';

export const MAIL = 'home/vmail/mail';
/** Regular files below `dir` (absolute paths), temp files left out, each with its lstat. */
async function regularFiles(dir: string): Promise<Map<string, Stats>> {
  const out = new Map<string, Stats>();
  for await (const e of walkTree(dir)) if (e.st.isFile() && !e.name.startsWith(TMP_PREFIX)) out.set(e.abs, e.st);
  return out;
}

const sha = async (p: string): Promise<string> => crypto.createHash('sha256').update(await fs.readFile(p)).digest('hex');

/**
 * The SHA-256 of every regular file below the roots of `roots` (each a host root): the
 * contents a committed file may have. Take it before a pass, of the old root (which does not
 * change during the pass) and of the new root (what earlier passes left).
 */
export async function knownContents(roots: string[], hosts: string[] = ALL_ROOT_PATHS): Promise<Set<string>> {
  const out = new Set<string>();
  for (const r of roots) for (const h of hosts) for (const abs of (await regularFiles(path.join(r, h))).keys()) out.add(await sha(abs));
  return out;
}

/**
 * Committed files of the new root whose content is none of `known`: a file cut short,
 * written into, or mixed from two versions. Empty files are never torn.
 */
export async function tornFiles(newRoot: string, known: Set<string>, hosts: string[] = ALL_ROOT_PATHS): Promise<string[]> {
  const torn: string[] = [];
  for (const h of hosts) {
    for (const [abs, st] of await regularFiles(path.join(newRoot, h))) {
      if (st.size > 0 && !known.has(await sha(abs))) torn.push(path.relative(newRoot, abs));
    }
  }
  return torn;
}

/** Maildir base names (the part before `:2,`) found more than once in one maildir (cur/ + new/). */
export async function duplicateMessages(root: string, mailboxes = MAIL): Promise<string[]> {
  const dups: string[] = [];
  const seen = new Map<string, string>();
  for await (const e of walkTree(path.join(root, mailboxes))) {
    const sub = path.basename(path.dirname(e.abs));
    if ((sub !== 'cur' && sub !== 'new') || e.name.startsWith(TMP_PREFIX)) continue;
    // One maildir is cur/ and new/ together: the key is the maildir and the base name.
    const key = `${path.dirname(path.dirname(e.abs))}\0${e.name.replace(/:2,.*$/, '')}`;
    const rel = path.relative(root, e.abs);
    if (seen.has(key)) dups.push(`${seen.get(key)} and ${rel}`);
    else seen.set(key, rel);
  }
  return dups;
}

/** After a pass that succeeded: verify passes, snapshots equal, no temp file, no duplicate. */
export async function expectIntact(m: Migration, plan = m.plan): Promise<void> {
  const v = await m.cli(['verify', '--plan', plan], 60_000);
  expect(v.code, `verify failed:\n${v.stderr}`).toBe(0);
  const [a, b] = await Promise.all([snapshotTree(m.oldRoot, ALL_ROOT_PATHS, { skipSockets: true }), snapshotTree(m.newRoot, ALL_ROOT_PATHS, { skipSockets: true })]);
  expect(diffSnapshots(a, b)).toEqual([]);
  expect(await findTempFiles(m.newRoot)).toEqual([]);
  expect(await duplicateMessages(m.newRoot)).toEqual([]);
}

export interface ControllerRun {
  child: ChildProcess;
  done: Promise<CliResult>;
}

/** `cmmigrate ARGS` in `cwd`, with a handle on the process so a test can kill it. */
export function startController(args: string[], cwd: string, timeoutMs = 60_000): ControllerRun {
  const child = spawn(process.execPath, [CONTROLLER_CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done };
}

/** A copy of the migration's plan with the old agent's address replaced (by a proxy's). */
export async function planVia(m: Migration, name: string, oldAddress: string): Promise<string> {
  const text = await fs.readFile(m.plan, 'utf8');
  expect(text).toContain(`"${m.oldAddress}"`);
  const plan = path.join(m.dir, name);
  await fs.writeFile(plan, text.replace(`"${m.oldAddress}"`, `"${oldAddress}"`));
  return plan;
}

/** A line the tests print for the table in docs/reliability.md, collected by grep from a real run. */
export function reportFigure(name: string, figures: Record<string, number | string>): void {
  console.log(`RELIABILITY ${JSON.stringify({ name, ...figures })}`);
}
