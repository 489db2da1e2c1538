/**
 * Verify honours cancellation like the other streaming calls (issue 11): a controller that
 * stops reading and then cancels ends the agent's walk, and no file of the tree stays open.
 * Before, the handler waited for the stream to drain with no signal, so a cancelled Verify
 * that had filled its window stayed parked for the life of the agent.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTls } from '../controller/tls-material';
import { agentClient, clientChannelOptions, type AgentClient } from '../proto';
import { setupMigration, type Migration } from './support/harness';

/** Entries enough (about 40,000: some 10 MB of records) that the Verify answer cannot fit in the HTTP/2 window and the loopback socket buffers of a client that stops reading, on a fast machine too. */
const TREE = { addresses: 400, messagesPerAddress: 100, tinyMessages: true, bigFiles: [3 * 1024 * 1024, 3 * 1024 * 1024] };

async function openUnder(pid: number, dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await fs.readdir(`/proc/${pid}/fd`)) {
    const target = await fs.readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    if (target.startsWith(dir + path.sep)) out.push(target);
  }
  return out;
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('Verify cancellation', () => {
  let m: Migration;
  let client: AgentClient;

  beforeAll(async () => {
    m = await setupMigration({ tree: TREE });
    const ctl = await loadTls(path.join(m.dir, '.cmmigrate', 'tls', 'controller'), 'controller');
    client = agentClient(m.oldAddress, grpc.credentials.createSsl(ctl.ca, ctl.key, ctl.cert), clientChannelOptions());
  }, 120_000);
  afterAll(async () => {
    client?.close();
    await m?.close();
  });

  it('a cancelled Verify stops its walk and closes every file it opened', async () => {
    const cancelledLines = (): number => m.old.log().split('\n').filter((l) => l.includes('"method":"Verify"') && l.includes('call cancelled by the peer')).length;
    expect(cancelledLines()).toBe(0);
    const call = client.Verify({ scope: { mailboxes_dir: '/home/vmail/mail', roots: ['mailboxes'] }, owners: [] });
    call.on('error', () => undefined); // CANCELLED, below
    let messages = 0;
    await new Promise<void>((resolve) =>
      call.once('data', () => {
        messages++;
        call.pause(); // stop reading: the agent's writes back up
        resolve();
      }),
    );
    // Give the agent time to fill the window and wait for it to drain.
    await new Promise((r) => setTimeout(r, 1000));
    expect(cancelledLines()).toBe(0);
    call.cancel();
    await until('the agent to log the cancelled Verify', () => cancelledLines() === 1).catch((e) => {
      throw new Error(`${e.message}: ${m.old.log().split('\n').filter((l) => l.includes('Verify')).join('\n')}`);
    });
    await until('no descriptor of the old tree left open', async () => (await openUnder(m.old.child.pid!, m.oldRoot)).length === 0);
    expect(messages).toBe(1);
    // The agent still answers.
    const again = await new Promise<number>((resolve, reject) => {
      let n = 0;
      const c = client.Verify({ scope: { mailboxes_dir: '/home/vmail/mail', roots: ['mailboxes'] }, owners: [] });
      c.on('data', () => n++);
      c.on('end', () => resolve(n));
      c.on('error', reject);
    });
    expect(again).toBeGreaterThan(1);
  }, 60_000);
});
