/**
 * A seeded fuzzer of the receiving side: agent/receive/pull.ts's `pull()` is fed listings and tar
 * streams that start out well formed (test/support/crafted-sender.ts builds them) and are
 * then damaged: listing entries with changed fields, listing messages re-encoded as
 * protobuf with flipped bytes (what does not decode is what grpc-js would refuse), tar
 * streams with flipped bytes, cut, spliced or with lying size fields, cut into odd slices.
 * `fuzzPackedPull` sends the entries packed as the sender does since protocol 2
 * (test/support/fuzz-packed.ts damages the packed bytes); every listing goes through the
 * receiver's own unpacking (agent/receive/pull-session.ts's `unpacked`) before the merge.
 *
 * Every run must end in success or a CmError of a registered code (proto/errors.ts); never
 * another exception, an unhandled rejection, a run that does not end, a file outside the new
 * root, or a temp file left behind. Used by test/fuzz.test.ts (a few seconds in every CI
 * run) and test/bench/fuzz.ts (longer).
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { CmError, isErrorCode, type ListBatch, type ListBatch__Output, type ListEntry } from '../../proto';
import { loadIdentity } from '../../agent/fs/identity';
import { resolveRoots } from '../../agent/fs/paths';
import { pull, TMP_PREFIX, type FetchChannel } from '../../agent/receive/pull';
import { unpacked } from '../../agent/receive/pull-session';
import { CraftedTar, listed, listing, MAILBOXES, setUstarSize } from './crafted-sender';
import { damagedPacked } from './fuzz-packed';
import { writeIdentity } from './relay-tree';
import { Rng } from './rng';
import descriptor from '../../proto/generated/cmmigrate.json';

const DESCRIPTOR = descriptor as unknown as protobuf.INamespace;
const ListBatchType = protobuf.Root.fromJSON(DESCRIPTOR).lookupType('cmmigrate.v1.ListBatch');

export interface FuzzFigures {
  iterations: number;
  succeeded: number;
  refused: number;
  /** Listings whose damaged protobuf did not decode (grpc-js would refuse them). */
  undecodable: number;
  /** Error codes seen, with counts. */
  codes: Record<string, number>;
  /** Problems: anything but success or a CmError, with the seed that shows it. */
  failures: string[];
  /** fuzzPackedPull: how the packed bytes were damaged, with counts (`none`: not at all). */
  packed?: Record<string, number>;
}

/** Longest a run may take before it counts as hung (the inputs are a few KiB). */
const HANG_MS = 30_000;

interface Case {
  list: ListBatch[];
  tar: Buffer;
}

const mb = (n: string): string => `${MAILBOXES}/${n}`;

/** The well-formed passes the fuzzer starts from. */
async function corpus(): Promise<Case[]> {
  const a = Buffer.from('hello\n');
  const b = Buffer.alloc(3000, 'b');
  const c = Buffer.alloc(70_000, 'c');
  const cases: Case[] = [];
  cases.push({
    list: listing([listed(MAILBOXES, 'dir'), listed(mb('u'), 'dir'), listed(mb('u/cur'), 'dir'), listed(mb('u/cur/1.M1P1.h,S=6:2,S'), 'file', { size: 6 }), listed(mb('u/password'), 'file', { size: b.length })]),
    tar: await new CraftedTar().file(mb('u/cur/1.M1P1.h,S=6:2,S'), a).file(mb('u/password'), b).end().bytes(),
  });
  cases.push({
    list: listing([
      listed(MAILBOXES, 'dir'),
      listed(mb('l1'), 'file', { size: c.length, nlink: 2 }),
      listed(mb('l2'), 'file', { size: c.length, nlink: 2, leader: mb('l1') }),
      listed(mb('s'), 'symlink', { link: 'l1' }),
      listed(mb('z'), 'dir'),
    ]),
    tar: await new CraftedTar().file(mb('l1'), c).end().bytes(),
  });
  cases.push({
    list: listing([listed(MAILBOXES, 'dir'), listed(mb('x'), 'file', { size: a.length }), listed(mb('y'), 'file', { size: a.length })]),
    tar: await new CraftedTar().file(mb('x'), a).control('skipped', { 'CMMIGRATE.skipped': mb('y') }).end().bytes(),
  });
  return cases;
}

const NASTY_PATHS = ['..', '../x', '/etc/passwd', 'a\0b', '', '.', 'x/../../y', 'a//b', '\\..\\x', '．．/x', 'x'.repeat(300), `${'d/'.repeat(2100)}x`];
const TYPES = ['file', 'dir', 'symlink', 'fifo', 'socket', 'character-device', 'block-device', 'device', 'link', '', 'weird'];

function mutateEntry(r: Rng, e: ListEntry): ListEntry {
  const x = { ...e };
  switch (r.int(0, 8)) {
    case 0:
      x.path = r.chance(0.5) ? mb(r.pick(NASTY_PATHS)) : r.pick(NASTY_PATHS);
      break;
    case 1:
      x.type = r.pick(TYPES);
      break;
    case 2:
      x.size = r.pick([-1, 0, 1, 2 ** 53, Number.MAX_SAFE_INTEGER, r.int(0, 100_000)]);
      break;
    case 3:
      x.mtime_ns = r.pick(['-1', '', 'abc', '1'.repeat(30), '0', '99999999999999999999']);
      break;
    case 4:
      x.mode = r.pick([0o7777, 0o4755, -1, 2 ** 31, 0o170000 | 0o644]);
      break;
    case 5:
      x.user = r.pick(['', 'root', 'nobody-here', '../x', 'a'.repeat(100), '#0', '#99999']);
      x.group = r.pick(['', 'root', 'postdrop', '$']);
      break;
    case 6:
      x.leader = r.chance(0.5) ? mb(r.pick(['l1', 'u', 'nope', '..', 'l2'])) : r.pick(NASTY_PATHS);
      x.nlink = r.int(0, 3);
      break;
    case 7:
      x.link = r.pick(['/etc/shadow', '../../../../x', '', 'a'.repeat(5000), 'l1']);
      break;
    default:
      x.ino = r.pick(['', 'x', '1:1', '-1:-1']);
  }
  return x;
}

/** A ListBatch as the receiver gets it from grpc-js (defaults filled in), or null if it does not decode. */
function throughWire(r: Rng, b: ListBatch, flip: boolean): ListBatch__Output | null {
  const bytes = Buffer.from(ListBatchType.encode(ListBatchType.fromObject(b)).finish());
  if (flip && bytes.length) for (let k = r.int(1, 4); k > 0; k--) bytes[r.int(0, bytes.length - 1)] ^= 1 << r.int(0, 7);
  try {
    const msg = ListBatchType.decode(bytes);
    return ListBatchType.toObject(msg, { longs: String, enums: String, defaults: true, oneofs: true }) as ListBatch__Output;
  } catch {
    return null;
  }
}

function mutateTar(r: Rng, tar: Buffer): Buffer {
  const t = Buffer.from(tar);
  switch (r.int(0, 5)) {
    case 0: // bit flips
      for (let k = r.int(1, 8); k > 0; k--) t[r.int(0, t.length - 1)] ^= 1 << r.int(0, 7);
      return t;
    case 1: // cut
      return t.subarray(0, r.int(0, t.length));
    case 2: {
      // a header's size field lies
      const headers: number[] = [];
      for (let off = 0; off + 512 <= t.length; off += 512) if (t.subarray(off + 257, off + 262).toString('latin1') === 'ustar') headers.push(off);
      if (headers.length) setUstarSize(t, r.pick(headers), r.pick([0, 1, 511, 513, 100_000, 8 ** 11 - 1]));
      return t;
    }
    case 3: {
      // a block repeated or dropped
      const blocks = Math.floor(t.length / 512);
      const k = r.int(0, Math.max(0, blocks - 1)) * 512;
      return r.chance(0.5) ? Buffer.concat([t.subarray(0, k + 512), t.subarray(k)]) : Buffer.concat([t.subarray(0, k), t.subarray(k + 512)]);
    }
    case 4: // garbage appended or prepended
      return r.chance(0.5) ? Buffer.concat([t, Buffer.from(r.str('\0\xff abc', r.int(1, 2000)), 'latin1')]) : Buffer.concat([Buffer.from(r.str('\0\xffx', 512), 'latin1'), t]);
    default: // bytes in a header's text fields
      for (let k = r.int(1, 4); k > 0; k--) {
        const off = Math.floor(r.int(0, Math.max(0, t.length - 512)) / 512) * 512;
        t.write(r.pick(['../../x', '/abs', 'path=../../../x', '\0', 'ustar\0']), off + r.int(0, 500), 'latin1');
      }
      return t;
  }
}

/** One run's input: the listing as grpc-js hands it over (null: did not decode) and the tar bytes. */
interface Input {
  list: (ListBatch__Output | null)[];
  tar: Buffer;
}

/** The listing with damaged entries (and damaged protobuf), the tar damaged or not. */
function unpackedInput(r: Rng, c: Case): Input {
  // Damage the listing, the tar, or both.
  const what = r.int(0, 2);
  let list: (ListBatch__Output | null)[] = c.list.map((b) => throughWire(r, b, false));
  if (what !== 1) {
    const flip = r.chance(0.3);
    list = c.list.map((b) => {
      const entries = b.entries?.map((e) => (r.chance(0.3) ? mutateEntry(r, e) : e));
      return throughWire(r, { ...b, ...(entries ? { entries } : {}) }, flip);
    });
  }
  return { list, tar: what !== 0 ? mutateTar(r, c.tar) : c.tar };
}

/** The listing's entries packed (some with damaged fields first), the packed bytes damaged; now and then the tar too. */
function packedInput(r: Rng, c: Case, figures: FuzzFigures): Input {
  const list: (ListBatch__Output | null)[] = [];
  for (const b of c.list) {
    if (!b.entries) {
      list.push(throughWire(r, b, false));
      continue;
    }
    const fields = r.chance(0.3);
    const entries = b.entries.map((e) => (fields && r.chance(0.3) ? mutateEntry(r, e) : e));
    const { batches, damage } = damagedPacked(r, entries, b.entries);
    figures.packed![damage] = (figures.packed![damage] ?? 0) + 1;
    for (const p of batches) list.push(throughWire(r, p, false));
  }
  return { list, tar: r.chance(0.2) ? mutateTar(r, c.tar) : c.tar };
}

/**
 * Fuzz for about `seconds` (at least `minIterations`) from `seed`. The work happens in one
 * temp directory; each iteration gets a fresh new root next to a sentinel directory.
 */
export function fuzzPull(opts: FuzzOptions): Promise<FuzzFigures> {
  return fuzzReceiver(opts, (r, c) => unpackedInput(r, c));
}

/** The same with the listing packed as the sender sends it since protocol 2, its bytes damaged. */
export function fuzzPackedPull(opts: FuzzOptions): Promise<FuzzFigures> {
  return fuzzReceiver(opts, packedInput, {});
}

/** How long to fuzz and from which seed; `log` hears each problem as it is found. */
export interface FuzzOptions {
  seed: number;
  seconds: number;
  minIterations?: number;
  log?: (s: string) => void;
}

async function fuzzReceiver(opts: FuzzOptions, input: (r: Rng, c: Case, figures: FuzzFigures) => Input, packed?: Record<string, number>): Promise<FuzzFigures> {
  const figures: FuzzFigures = { iterations: 0, succeeded: 0, refused: 0, undecodable: 0, codes: {}, failures: [], ...(packed ? { packed } : {}) };
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown): void => void unhandled.push(err);
  process.on('unhandledRejection', onUnhandled);
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-fuzz-'));
  const outside = path.join(base, 'outside');
  await fs.mkdir(outside);
  const cases = await corpus();
  const end = Date.now() + opts.seconds * 1000;
  try {
    for (let i = 0; Date.now() < end || i < (opts.minIterations ?? 0); i++) {
      const seed = opts.seed * 1_000_003 + i;
      const r = new Rng(seed);
      const c = r.pick(cases);
      const { list, tar } = input(r, c, figures);
      figures.iterations++;
      if (list.some((b) => b === null)) {
        figures.undecodable++;
        continue;
      }
      const root = path.join(base, `new-${i}`);
      await writeIdentity(root, 7000);
      const cfg = { root, mailboxesDir: '/home/vmail/mail' };
      const problem = (s: string): void => {
        figures.failures.push(`seed ${seed}: ${s}`);
        opts.log?.(`seed ${seed}: ${s}`);
      };
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<'hung'>((res) => (timer = setTimeout(() => res('hung'), HANG_MS)));
      try {
        const run = pull({
          cfg,
          roots: resolveRoots(cfg, ['mailboxes'], '/home/vmail/mail'),
          phase: r.chance(0.5) ? 'initial' : 'final',
          owners: {},
          identity: await loadIdentity(root),
          stateDir: path.join(root, 'var/lib/cmmigrate'),
          list: unpacked(toAsync(list as ListBatch__Output[])),
          openFetch: (): FetchChannel => ({
            send: () => undefined,
            end: () => undefined,
            data: (async function* () {
              const step = r.pick([1, 7, 321, 512, 4096, 65536, tar.length || 1]);
              for (let off = 0; off < tar.length; off += step) yield tar.subarray(off, off + step);
            })(),
          }),
        });
        if ((await Promise.race([run, hung])) === 'hung') {
          problem(`no end after ${HANG_MS} ms`);
          break; // the hung run still holds its root: stop here, the seed replays it
        }
        figures.succeeded++;
      } catch (err) {
        if (err instanceof CmError && isErrorCode(err.code)) {
          figures.refused++;
          figures.codes[err.code] = (figures.codes[err.code] ?? 0) + 1;
        } else if (err instanceof CmError) problem(`a CmError of an unregistered code: ${err.code}`);
        else problem(`not a CmError: ${(err as Error)?.stack ?? String(err)}`);
      } finally {
        clearTimeout(timer);
      }
      if ((await fs.readdir(outside)).length) problem('wrote outside the new root');
      if ((await fs.readdir(base)).some((n) => !n.startsWith('new-') && n !== 'outside')) problem('wrote next to the new root');
      const temps = await findTemps(root);
      if (temps.length) problem(`temp files left: ${temps.join(', ')}`);
      await fs.rm(root, { recursive: true, force: true });
      if (unhandled.length) problem(`unhandled rejection: ${String(unhandled.splice(0)[0])}`);
    }
    // Late rejections of the last iterations.
    await new Promise((res) => setTimeout(res, 50));
    if (unhandled.length) figures.failures.push(`unhandled rejection at the end: ${String(unhandled[0])}`);
  } finally {
    process.off('unhandledRejection', onUnhandled);
    await fs.rm(base, { recursive: true, force: true });
  }
  return figures;
}

async function findTemps(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const n of await fs.readdir(dir).catch(() => [] as string[])) {
    const p = path.join(dir, n);
    if (n.startsWith(TMP_PREFIX)) out.push(p);
    if ((await fs.lstat(p).catch(() => null))?.isDirectory()) out.push(...(await findTemps(p)));
  }
  return out;
}

/** A listing's batches as the call's stream gives them. */
async function* toAsync<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}
