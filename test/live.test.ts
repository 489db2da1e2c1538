/**
 * Passes while the relay is live: a writer keeps appending to, delivering into and expunging
 * from one mailbox of the old host (relay-activity.ts). The initial (live) pass must finish,
 * report what vanished or changed while read, and never land a torn file; the final
 * (strict) pass must refuse, naming the path and `transfer.source_changed`; once the
 * writer stops, the final pass settles everything and verify passes.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWriter, type Writer } from './support/relay-activity';
import { ALL_ROOT_PATHS, findTempFiles, setupMigration, type CliResult, type Migration } from './support/harness';
import { diffSnapshots, snapshotTree, type EntrySnapshot } from './support/tree-snapshot';

const MIB = 1024 * 1024;
const DOMAIN_DIR = '/home/vmail/mail/mail.example.org';
/** A pass takes a second or two; a CLI running longer than this is stuck. */
const CLI_TIMEOUT = 20_000;

interface SyncJson {
  files: number;
  bytes: number;
  vanished: number;
  vanished_paths: string[];
  deletes_skipped: boolean;
}

function summaryOf(r: CliResult): SyncJson {
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as SyncJson;
}

describe('passes while the relay is live', () => {
  let m: Migration;
  let writer: Writer | undefined;
  let mailbox = '';
  /** The old tree before the writer started. */
  let before: Map<string, EntrySnapshot>;

  const sync = (phase: 'initial' | 'final', timeoutMs = CLI_TIMEOUT): Promise<CliResult> => m.cli(['sync', '--plan', m.plan, '--phase', phase, '--json'], timeoutMs);
  /** Paths the writer changes: its files, and the directories it adds files to. */
  const byWriter = (p: string): boolean => writer!.isTouched(p) || p === mailbox || p.startsWith(`${mailbox}/`) && ['new', 'tmp', 'cur'].includes(path.posix.basename(p));

  beforeAll(async () => {
    // Big messages keep the pass busy for a while, so that the writer works during it.
    m = await setupMigration({ tree: { addresses: 6, messagesPerAddress: 10, bigFiles: [24 * MIB, 32 * MIB, 28 * MIB] } });
    mailbox = `${DOMAIN_DIR}/${(await fs.readdir(path.join(m.oldRoot, DOMAIN_DIR))).sort()[1]}`;
    before = await snapshotTree(m.oldRoot, ALL_ROOT_PATHS, { skipSockets: true });
  }, 60_000);
  afterAll(async () => {
    await writer?.stop().catch(() => undefined);
    await m?.close();
  });

  it('the initial pass completes under the writer, reports what changed while read, and lands no torn file', async () => {
    writer = await startWriter(m.oldRoot, { mailbox, seed: 7 });
    const r = await sync('initial');
    const s = summaryOf(r);
    const c = writer.counts();
    console.log(`live initial pass: ${s.files} files, ${(s.bytes / MIB).toFixed(1)} MiB, vanished ${s.vanished} (${s.vanished_paths.slice(0, 3).join(', ')}, ...); writer so far: ${JSON.stringify(c)}`);
    expect(c.steps).toBeGreaterThan(20);
    // What vanished or changed while read is reported (the writer expunges a message every
    // few milliseconds), and it is all the writer's doing.
    expect(s.vanished).toBeGreaterThan(0);
    expect(s.vanished_paths.length).toBe(Math.min(s.vanished, s.vanished_paths.length));
    for (const p of s.vanished_paths) expect(p.startsWith(mailbox + '/'), p).toBe(true);
    expect(await findTempFiles(m.newRoot)).toEqual([]);

    // Everything the writer did not touch is exactly as on the source.
    const target = await snapshotTree(m.newRoot, ALL_ROOT_PATHS, { skipSockets: true });
    const mailOnly = (p: string): boolean => !p.startsWith('/home/vmail/mail');
    expect(diffSnapshots(before, target, { ignore: (p) => byWriter(p) || mailOnly(p) })).toEqual([]);
    // What it touched and the pass copied is a state the file really had: never torn.
    let checked = 0;
    for (const e of target.values()) {
      if (e.type !== 'file' || !writer.isTouched(e.path)) continue;
      const data = await fs.readFile(path.join(m.newRoot, e.path));
      expect(writer.wasState(e.path, data), `${e.path} (${data.length} bytes) on the new host is no state the source had`).toBe(true);
      checked++;
    }
    expect(checked).toBeGreaterThan(0);
  }, 60_000);

  it('the final pass under the same writer refuses, naming the changed path', async () => {
    // The writer changes files between the listing and the read; a strict pass notices when
    // it happens to a file it reads, which with a writer this busy is (almost) every time.
    let r: CliResult | undefined;
    let attempts = 0;
    for (; attempts < 3; attempts++) {
      r = await sync('final', 10_000);
      if (r.code !== 0) break;
    }
    console.log(`strict pass refused after ${attempts + 1} attempt(s): ${r!.stderr.trim()}`);
    expect(r!.signal, 'the CLI did not end by itself').toBe(null);
    expect(r!.code).not.toBe(0);
    expect(r!.stderr).toContain('[transfer.source_changed]');
    expect(r!.stderr).toContain(mailbox + '/');
    expect(await findTempFiles(m.newRoot)).toEqual([]);
  }, 90_000);

  it('once the writer stops, the final pass settles everything and verify passes', async () => {
    await writer!.stop();
    const s = summaryOf(await sync('final'));
    expect(s.vanished).toBe(0);
    expect(s.deletes_skipped).toBe(false);
    expect(await findTempFiles(m.newRoot)).toEqual([]);
    const v = await m.cli(['verify', '--plan', m.plan], CLI_TIMEOUT);
    expect(v.code, v.stderr).toBe(0);
    const [a, b] = await Promise.all([snapshotTree(m.oldRoot, ALL_ROOT_PATHS, { skipSockets: true }), snapshotTree(m.newRoot, ALL_ROOT_PATHS, { skipSockets: true })]);
    expect(diffSnapshots(a, b)).toEqual([]);
  }, 60_000);
});
