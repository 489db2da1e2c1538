/**
 * The receiver's journal of what a pass wrote (agent/manifest.ts): a record appended after
 * the pass was stopped (an action the executor had under way, a hard link or a rename it
 * awaited) still reaches the disk, so the next pass knows the file as one cmmigrate wrote.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManifestReader, ManifestWriter, type ManifestRecord } from '../agent/manifest';

let dir: string | undefined;
afterEach(async () => {
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
  dir = undefined;
});

const rec = (p: string): ManifestRecord => ({ p, t: 'file', s: 1, m: '1', i: '1', si: '1' });

describe('ManifestWriter', () => {
  it('writes a record appended after close, in an interrupted pass, to its journal at once', async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-manifest-'));
    const w = new ManifestWriter(dir, 'mailboxes');
    w.append(rec('home/vmail/mail/a'));
    w.close();
    w.append(rec('home/vmail/mail/b'));
    // No flush, no commit: what is on disk is what a killed agent would leave.
    const r = await ManifestReader.open(dir, 'mailboxes');
    try {
      expect((await r.at('home/vmail/mail/a'))?.p).toBe('home/vmail/mail/a');
      expect((await r.at('home/vmail/mail/b'))?.p).toBe('home/vmail/mail/b');
    } finally {
      r.close();
    }
  });
});
