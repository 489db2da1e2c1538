/**
 * No deletes after sender read errors (issue 15, point 2). A live pass whose sender could
 * not read everything (a file that vanished between List and Fetch, a directory that
 * vanished during the listing) must not take the missing entries for deleted: it deletes
 * nothing on the receiver and reports `deletes_skipped: true`. The sender is crafted so
 * that each read error happens exactly where the test puts it; the receiver is the real
 * agent. A twin pass without the read error deletes, so the hold-back is what the test sees.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAX_SKIPPED } from '../agent/wire/wire-format';
import { CraftedTar, listed, listing, MAILBOXES, startCraftedSender, type CraftedSender } from './support/crafted-sender';
import { setupMigration, type Migration } from './support/harness';

const mb = (name: string): string => `${MAILBOXES}/${name}`;
const A = Buffer.from('message a\n');
const B = Buffer.from('message b\n');

interface Summary {
  deleted: number;
  deletes_skipped: boolean;
  vanished: number;
}

describe('a pass with read errors on the sender deletes nothing', { timeout: 60_000 }, () => {
  let m: Migration;
  let sender: CraftedSender;
  let plan: string;

  beforeAll(async () => {
    m = await setupMigration({ tree: { addresses: 1, messagesPerAddress: 2 } });
    sender = await startCraftedSender('127.0.0.2', path.join(m.dir, '.cmmigrate', 'tls', 'old'));
    plan = path.join(m.dir, 'crafted.toml');
    await fs.writeFile(plan, (await fs.readFile(m.plan, 'utf8')).replace(`"${m.oldAddress}"`, `"${sender.address}"`));
  }, 60_000);
  afterAll(async () => {
    await sender?.stop();
    await m?.close();
  });

  async function sync(): Promise<Summary> {
    const r = await m.cli(['sync', '--plan', plan, '--phase', 'initial', '--json'], 30_000);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as Summary;
  }
  const exists = (name: string): Promise<boolean> => fs.stat(path.join(m.newRoot, mb(name))).then(() => true, () => false);

  /**
   * A pass that lands `b` beside `a`, both written by cmmigrate (so a later pass may delete
   * them); whatever else an earlier test left goes. The sender answers only what is asked.
   */
  async function seed(b: string): Promise<void> {
    const aThere = await exists('a');
    sender.pass = {
      list: listing([listed(MAILBOXES, 'dir'), listed(mb('a'), 'file', { size: A.length }), listed(mb(b), 'file', { size: B.length })]),
      fetch: await (aThere ? new CraftedTar() : new CraftedTar().file(mb('a'), A)).file(mb(b), B).end().bytes(),
      endFetch: 'wants',
    };
    const s = await sync();
    expect(s.deletes_skipped).toBe(false);
    expect(await exists('a')).toBe(true);
    expect(await exists(b)).toBe(true);
  }

  it('a file that vanished between List and Fetch: b, gone from the sender, stays; deletes_skipped', async () => {
    await seed('b1');
    sender.pass = {
      list: listing([listed(MAILBOXES, 'dir'), listed(mb('a'), 'file', { size: A.length }), listed(mb('c'), 'file', { size: 5 })]),
      fetch: await new CraftedTar().control('skipped', { [PAX_SKIPPED]: mb('c') }).end().bytes(),
      endFetch: 'wants',
    };
    const s = await sync();
    expect(sender.fetches.at(-1)).toEqual([mb('c')]);
    expect(s.vanished).toBe(1);
    expect(s.deletes_skipped).toBe(true);
    expect(s.deleted).toBe(0);
    expect(await exists('b1')).toBe(true);
    expect(await exists('c')).toBe(false);
  });

  it('a directory that vanished during the listing: b stays; deletes_skipped', async () => {
    await seed('b2');
    const list = listing([listed(MAILBOXES, 'dir'), listed(mb('a'), 'file', { size: A.length })]);
    list[list.length - 1] = { root_end: { sockets_skipped: 0, vanished: 1, vanished_paths: [`/${mb('gone.example.org')}`] } };
    sender.pass = { list, fetch: await new CraftedTar().end().bytes(), endFetch: 'wants' };
    const s = await sync();
    expect(s.vanished).toBe(1);
    expect(s.deletes_skipped).toBe(true);
    expect(s.deleted).toBe(0);
    expect(await exists('b2')).toBe(true);
  });

  it('the twin pass without a read error deletes b (the hold-back above is not the default)', async () => {
    await seed('b3');
    sender.pass = { list: listing([listed(MAILBOXES, 'dir'), listed(mb('a'), 'file', { size: A.length })]), fetch: await new CraftedTar().end().bytes(), endFetch: 'wants' };
    const s = await sync();
    expect(s.deletes_skipped).toBe(false);
    expect(s.deleted).toBe(1);
    expect(await exists('b3')).toBe(false);
    expect(await exists('a')).toBe(true);
  });
});
