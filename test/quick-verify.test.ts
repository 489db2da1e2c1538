/**
 * `cmmigrate verify --quick` (issue 13): each agent takes a regular file's SHA-256 from
 * what its passes recorded while the file's device, inode, size, mtime and ctime are as
 * recorded, and reads the rest. A byte changed behind cmmigrate's back with its mtime
 * restored still differs (ctime moved), on either host; the full verify agrees.
 */
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DigestReader } from '../agent/verify/digest-records';
import { loadTls } from '../controller/tls-material';
import { agentClient, clientChannelOptions, comparePaths, rootsForPhase, type AgentClient, type VerifyBatch__Output } from '../proto';
import { setupMigration, walkTree, type Migration } from './support/harness';

interface VerifyJson {
  ok: boolean;
  differences: number;
  first: { path: string; what: string }[];
  quick?: boolean;
  from_records?: number;
  read?: number;
  lines_compared?: boolean;
}

describe('verify --quick', () => {
  let m: Migration;
  const verify = async (...extra: string[]): Promise<VerifyJson> => {
    const r = await m.cli(['verify', '--plan', m.plan, '--json', ...extra]);
    expect([0, 1], r.stderr).toContain(r.code);
    return JSON.parse(r.stdout) as VerifyJson;
  };

  beforeAll(async () => {
    m = await setupMigration({ tree: { addresses: 8, messagesPerAddress: 25 } });
    const r = await m.cli(['sync', '--plan', m.plan, '--phase', 'final', '--json']);
    expect(r.code, r.stderr).toBe(0);
  }, 180_000);
  afterAll(async () => {
    await m?.close();
  });

  it('takes the digests the pass recorded on both hosts, reading only files the records do not cover', async () => {
    const v = await verify('--quick');
    expect(v.ok).toBe(true);
    expect(v.quick).toBe(true);
    // The roots' digests matched: no record line was asked for.
    expect(v.lines_compared).toBe(false);
    // The pass hashed every file on both sides; only files landed in the clock tick of the
    // records' last write are racy and read again.
    expect(v.from_records!).toBeGreaterThan(0);
    expect(v.from_records!).toBeGreaterThan(v.read!);
    const full = await verify();
    expect(full.ok).toBe(true);
    expect(full.quick).toBeUndefined();
    // The full verify read everything and recorded it: now every digest comes from a record.
    const again = await verify('--quick');
    expect(again.ok).toBe(true);
    expect(again.read).toBe(0);
    expect(again.from_records).toBe(v.from_records! + v.read!);
  }, 120_000);

  it('catches a byte changed on the new host with its mtime restored, through ctime', async () => {
    const maildir = path.join(m.newRoot, 'home/vmail/mail');
    const target = await firstMessage(maildir);
    const data = await fs.readFile(target);
    const restore = await keepMtime(target);
    data[0] ^= 1;
    await fs.writeFile(target, data);
    await restore();
    const rel = '/' + path.relative(m.newRoot, target);
    const quick = await verify('--quick');
    expect(quick.ok).toBe(false);
    expect(quick.first.map((d) => d.path), JSON.stringify(quick.first)).toContain(rel);
    expect(quick.read).toBeGreaterThanOrEqual(1);
    // The root's digests differed, so the lines were fetched to name the path.
    expect(quick.lines_compared).toBe(true);
    const full = await verify();
    expect(full.ok).toBe(false);
    expect(full.first.map((d) => d.path)).toContain(rel);
    // Put it back, as cmmigrate sync would leave it.
    data[0] ^= 1;
    await fs.writeFile(target, data);
    await restore();
  }, 120_000);

  it('catches a byte changed on the old host with its mtime restored', async () => {
    const target = await firstMessage(path.join(m.oldRoot, 'home/vmail/mail'));
    const data = await fs.readFile(target);
    const restore = await keepMtime(target);
    data[data.length - 1] ^= 1;
    await fs.writeFile(target, data);
    await restore();
    const quick = await verify('--quick');
    expect(quick.ok).toBe(false);
    expect(quick.first).toEqual([{ path: '/' + path.relative(m.oldRoot, target), what: 'content differs' }]);
  }, 120_000);
});

/** Restores a file's mtime to the nanosecond afterwards (fs.utimes takes float seconds). */
async function keepMtime(file: string): Promise<() => Promise<void>> {
  const ns = (await fs.stat(file, { bigint: true })).mtimeNs;
  const stamp = `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`;
  return async () => {
    execFileSync('touch', ['-m', '-d', stamp, file]);
    expect((await fs.stat(file, { bigint: true })).mtimeNs).toBe(ns);
  };
}

async function firstMessage(dir: string): Promise<string> {
  for (const e of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    const full = path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name);
    if (e.isFile() && full.includes('/cur/')) return full;
  }
  throw new Error(`no message under ${dir}`);
}

describe('verify --quick after hard links were made', () => {
  let m: Migration;
  afterAll(async () => {
    await m?.close();
  });

  it('the receiver\'s records of hard-link leaders still hold after their links changed the leaders\' ctime', async () => {
    m = await setupMigration({ tree: { addresses: 8, messagesPerAddress: 25 } });
    expect(m.stats.hardlinks).toBeGreaterThan(5);
    const r = await m.cli(['sync', '--plan', m.plan, '--phase', 'final', '--json']);
    expect(r.code, r.stderr).toBe(0);
    // The first path of each hard-linked inode on the new host, in walk order: its leader.
    const linked: { rel: string; st: fsSync.BigIntStats }[] = [];
    for await (const e of walkTree(path.join(m.newRoot, 'home/vmail/mail'))) {
      const st = fsSync.lstatSync(e.abs, { bigint: true });
      if (st.isFile() && st.nlink > 1n) linked.push({ rel: path.relative(m.newRoot, e.abs), st });
    }
    linked.sort((a, b) => comparePaths(a.rel, b.rel));
    const seen = new Set<bigint>();
    const firsts = linked.filter((l) => !seen.has(l.st.ino) && seen.add(l.st.ino));
    expect(firsts.length).toBeGreaterThan(5);
    const reader = DigestReader.open(path.join(m.newRoot, 'var/lib/cmmigrate'), 'mailboxes');
    const held = firsts.filter((l) => reader.sha256(l.rel, l.st) !== undefined).length;
    reader.close();
    // Only a leader linked in the clock tick of the records' last write is racy and read again.
    expect(held, `${held} of ${firsts.length} leaders' records hold`).toBeGreaterThanOrEqual(firsts.length - 2);
    const v = await m.cli(['verify', '--plan', m.plan, '--json', '--quick']);
    expect(v.code, v.stderr).toBe(0);
  }, 180_000);
});

describe('Verify with digests_only', () => {
  let m: Migration;
  let client: AgentClient | undefined;
  afterAll(async () => {
    client?.close();
    await m?.close();
  });

  it('an agent answers one message per root: its digest, the one its lines give, and no lines', async () => {
    m = await setupMigration({ tree: { addresses: 4, messagesPerAddress: 10 } });
    const ctl = await loadTls(path.join(m.dir, '.cmmigrate', 'tls', 'controller'), 'controller');
    const c = agentClient(m.oldAddress, grpc.credentials.createSsl(ctl.ca, ctl.key, ctl.cert), clientChannelOptions());
    client = c;
    const roots = rootsForPhase('final');
    const ask = (digestsOnly: boolean): Promise<VerifyBatch__Output[]> =>
      new Promise((resolve, reject) => {
        const out: VerifyBatch__Output[] = [];
        const call = c.Verify({ scope: { mailboxes_dir: '/home/vmail/mail', roots }, owners: [], quick: true, digests_only: digestsOnly });
        call.on('data', (b: VerifyBatch__Output) => out.push(b));
        call.on('end', () => resolve(out));
        call.on('error', reject);
      });
    const withLines = await ask(false);
    const only = await ask(true);
    expect(only).toHaveLength(roots.length);
    expect(only.every((b) => b.lines.length === 0 && b.root_done !== null)).toBe(true);
    // Each root's digest is the SHA-256 of its lines, in the answer with lines and without.
    const fromLines: string[] = [];
    let h = crypto.createHash('sha256');
    let lines = 0;
    for (const b of withLines) {
      h.update(b.lines);
      lines += b.lines.length;
      if (b.root_done) {
        fromLines.push(h.digest('hex'));
        h = crypto.createHash('sha256');
      }
    }
    expect(lines).toBeGreaterThan(0);
    expect(withLines.filter((b) => b.root_done).map((b) => b.root_done!.sha256)).toEqual(fromLines);
    expect(only.map((b) => b.root_done!.sha256)).toEqual(fromLines);
    expect(only.find((b) => b.root_done!.root === 'mailboxes')!.root_done!.entries).not.toBe('0');
  }, 120_000);
});
