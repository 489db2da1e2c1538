/**
 * A sender that stays connected but stops sending must fail the pass within the agent's
 * --stall-timeout, naming the peer, instead of hanging it; nothing torn is left.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CraftedTar, listed, listing, MAILBOXES, startCraftedSender, type CraftedSender } from './support/crafted-sender';
import { findTempFiles, setupMigration, type Migration } from './support/harness';

const mb = (name: string): string => `${MAILBOXES}/${name}`;

describe('a stalled sender', () => {
  let m: Migration;
  let sender: CraftedSender;
  let plan: string;
  beforeAll(async () => {
    m = await setupMigration({ tree: { addresses: 1, messagesPerAddress: 2 }, agentArgs: ['--stall-timeout', '2'] });
    sender = await startCraftedSender('127.0.0.2', path.join(m.dir, '.cmmigrate', 'tls', 'old'));
    plan = path.join(m.dir, 'stalled.toml');
    await fs.writeFile(plan, (await fs.readFile(m.plan, 'utf8')).replace(`"${m.oldAddress}"`, `"${sender.address}"`));
  }, 60_000);
  afterAll(async () => {
    await sender?.stop();
    await m?.close();
  });

  it('a listing that stops: the pass fails as stalled within the timeout', async () => {
    sender.pass = { list: listing([listed(MAILBOXES, 'dir'), listed(mb('a'), 'dir')], { rootEnd: false }), stallList: true };
    const t0 = Date.now();
    const r = await m.cli(['sync', '--plan', plan, '--phase', 'initial'], 30_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('[connect.stalled]');
    expect(r.stderr).toContain(sender.address);
    expect(Date.now() - t0).toBeLessThan(15_000);
  });

  it('a file answer that stops in the middle: the pass fails as stalled, no temp file stays', async () => {
    const data = Buffer.alloc(300_000, 7);
    const full = await new CraftedTar().file(mb('big'), data).end().bytes();
    sender.pass = {
      list: listing([listed(MAILBOXES, 'dir'), listed(mb('big'), 'file', { size: data.length })]),
      fetch: full.subarray(0, 100_000), // part of the file, then silence
      endFetch: 'wants',
    };
    const r = await m.cli(['sync', '--plan', plan, '--phase', 'initial'], 30_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('[connect.stalled]');
    await expect(fs.stat(path.join(m.newRoot, mb('big')))).rejects.toThrow(/ENOENT/);
    expect(await findTempFiles(m.newRoot)).toEqual([]);
  });
});
