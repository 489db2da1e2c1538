/**
 * Device nodes refused by the sender (issue 15, point 4): a character device under the old
 * root's mailboxes (made with `mknod`, as root) stops the pass on the old agent with
 * `transfer.device_node` naming it, before anything is sent: nothing lands on the new host.
 * Without the node the same tree goes across, so the refusal is the node's.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_STATE_DIRS, setupMigration, walkTree, type Migration } from './support/harness';

describe('a device node on the old host', { timeout: 60_000 }, () => {
  let m: Migration;
  let node: string;
  let rel: string;
  beforeAll(async () => {
    m = await setupMigration({ tree: { addresses: 2, messagesPerAddress: 3 } });
    const dir = path.join(m.oldRoot, 'home', 'vmail', 'mail');
    const domain = (await fs.readdir(dir)).sort()[0];
    const user = (await fs.readdir(path.join(dir, domain))).sort()[0];
    node = path.join(dir, domain, user, 'cur', 'null-device');
    rel = path.relative(m.oldRoot, node);
  }, 60_000);
  afterAll(async () => {
    await m?.close();
  });

  const newTree = async (): Promise<string[]> => {
    const out: string[] = [];
    for await (const e of walkTree(m.newRoot)) out.push(path.relative(m.newRoot, e.abs));
    // The agent's own state dir may appear (the change journal's sync cookies): not the relay's.
    return out.filter((p) => !AGENT_STATE_DIRS.includes(p)).sort();
  };

  it('stops the pass with transfer.device_node naming it; the new root is as it was', async () => {
    execFileSync('mknod', [node, 'c', '1', '3']);
    const before = await newTree();
    for (const phase of ['initial', 'final']) {
      const r = await m.cli(['sync', '--plan', m.plan, '--phase', phase], 30_000);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain('[transfer.device_node]');
      expect(r.stderr).toContain(`/${rel} is a device node`);
      expect(await newTree()).toEqual(before);
      expect(before.filter((p) => p.startsWith('home'))).toEqual([]);
    }
  });

  it('without the node, the same tree goes across', async () => {
    await fs.rm(node);
    const r = await m.cli(['sync', '--plan', m.plan, '--phase', 'initial'], 30_000);
    expect(r.code, r.stderr).toBe(0);
    expect((await newTree()).some((p) => p.startsWith('home/vmail/mail/'))).toBe(true);
  });
});
