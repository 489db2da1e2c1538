/**
 * Flush before the manifest commits (issue 15, point 3). The receiving agent makes a pass
 * durable with one `sync -f` per root and only then turns the pass's journal into the
 * root's manifest: a crash in between must leave the previous manifest, never one that
 * names files whose data may not be on disk. A `sync` first on the new agent's PATH
 * records each call and the manifest files as they are at that moment, then runs the
 * real one.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupMigration, type Migration } from './support/harness';

interface SyncCall {
  args: string;
  /** Manifest and journal file name -> md5 of its content, when `sync` was called. */
  state: Record<string, string>;
}

const REAL_SYNC = execFileSync('sh', ['-c', 'command -v sync'], { encoding: 'utf8' }).trim();

describe('the pass is flushed to disk before its manifest is committed', { timeout: 60_000 }, () => {
  let m: Migration;
  let bin: string;
  let log: string;

  beforeAll(async () => {
    bin = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-sync-'));
    log = path.join(bin, 'calls.log');
    await fs.writeFile(
      path.join(bin, 'sync'),
      [
        '#!/bin/sh',
        '{ echo "CALL $*"',
        '  for f in "$SYNC_STATE_DIR"/*.jsonl; do [ -e "$f" ] && echo "STATE $(basename "$f") $(md5sum < "$f" | cut -c1-32)"; done',
        '  echo END; } >> "$SYNC_LOG"',
        `exec ${REAL_SYNC} "$@"`,
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    // The new root is only known once setupMigration made it: the script reads it late.
    m = await setupMigration({
      tree: { addresses: 2, messagesPerAddress: 3 },
      agentEnv: { new: { PATH: `${bin}${path.delimiter}${process.env.PATH}`, SYNC_LOG: log, SYNC_STATE_DIR: path.join(bin, 'state') } },
    });
    await fs.symlink(path.join(m.newRoot, 'var', 'lib', 'cmmigrate'), path.join(bin, 'state'));
  }, 60_000);
  afterAll(async () => {
    await m?.close();
    await fs.rm(bin, { recursive: true, force: true });
  });

  async function calls(): Promise<SyncCall[]> {
    const text = await fs.readFile(log, 'utf8').catch(() => '');
    const out: SyncCall[] = [];
    for (const line of text.split('\n')) {
      if (line.startsWith('CALL ')) out.push({ args: line.slice(5), state: {} });
      else if (line.startsWith('STATE ')) {
        const [, name, md5] = line.split(' ');
        out[out.length - 1].state[name] = md5;
      }
    }
    await fs.rm(log, { force: true });
    return out;
  }
  const manifests = async (): Promise<Record<string, string>> => {
    const dir = path.join(m.newRoot, 'var', 'lib', 'cmmigrate');
    const out: Record<string, string> = {};
    for (const n of await fs.readdir(dir)) if (/\.manifest(\.extra)?\.jsonl$/.test(n)) out[n] = execFileSync('md5sum', [path.join(dir, n)], { encoding: 'utf8' }).slice(0, 32);
    return out;
  };
  const MAILBOX_ROOT = (): string => path.join(m.newRoot, 'home', 'vmail', 'mail');

  it('first pass: at the flush of the mailboxes root no manifest of it exists yet; afterwards it does', async () => {
    const r = await m.cli(['sync', '--plan', m.plan, '--phase', 'initial'], 30_000);
    expect(r.code, r.stderr).toBe(0);
    const c = await calls();
    const flush = c.filter((x) => x.args === `-f ${MAILBOX_ROOT()}`);
    expect(flush.length).toBe(1);
    expect(Object.keys(flush[0].state).filter((n) => n.startsWith('mailboxes.manifest'))).toEqual([]);
    expect(Object.keys(await manifests())).toContain('mailboxes.manifest.jsonl');
  });

  it('a later pass: at its flush the manifest is still the previous pass\'s; it changes after', async () => {
    const before = await manifests();
    const dir = path.join(m.oldRoot, 'home', 'vmail', 'mail');
    const addr = (await fs.readdir(dir)).find((n) => !n.startsWith('.'))!;
    const user = (await fs.readdir(path.join(dir, addr)))[0];
    await fs.writeFile(path.join(dir, addr, user, 'new', '1775999999.M1P1.host,S=6'), 'added\n');
    const r = await m.cli(['sync', '--plan', m.plan, '--phase', 'initial'], 30_000);
    expect(r.code, r.stderr).toBe(0);
    const flush = (await calls()).filter((x) => x.args === `-f ${MAILBOX_ROOT()}`);
    expect(flush.length).toBe(1);
    const mailboxes = (state: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(state).filter(([n]) => /^mailboxes\.manifest/.test(n)));
    expect(mailboxes(flush[0].state)).toEqual(mailboxes(before));
    expect(mailboxes(await manifests())).not.toEqual(mailboxes(before));
  });
});
