/**
 * The digest `cmmigrate verify` compares: one record per entry of a root, in walk order,
 * over its path, type, size, mode, owner names (after the plan's owner rules), mtime to
 * the microsecond, content SHA-256, symlink target and hard-link group. Sockets are
 * counted and left out, as the transfer leaves them out.
 */
import * as crypto from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsSync from 'node:fs';
import { CmError, type RootName, type VerifyBatch, type VerifyEntry } from '../proto';
import * as fs from 'node:fs/promises';
import { DigestReader, DigestWriter, digestRecord } from './digest-records';
import { nameOr, type Identity } from './identity';
import type { ResolvedRoot } from './paths';
import { walkRoot, type WalkEntry } from './walk';

export interface DigestOptions {
  identity: Identity;
  owners: Partial<Record<RootName, { user: string; group: string }>>;
  /** Stops the walk and the reads of files under way (their descriptors close). */
  signal?: AbortSignal;
  /**
   * Where this agent keeps its digest records (agent/digest-records.ts). With it, the
   * digest records every file it hashed for later quick verifies; with `quick` too, a file
   * whose record still holds is not read.
   */
  records?: { stateDir: string; quick: boolean };
}

export interface RootResult {
  root: string;
  present: boolean;
  entries: number;
  sha256: string;
  socketsSkipped: number;
  /** Regular files whose digest came from a record, and files read and hashed. */
  fromRecords: number;
  read: number;
}

const HASH_AHEAD = 8;

/** Files up to this size are read whole, synchronously: one read, one buffer. */
const SMALL_FILE = 1024 * 1024;

async function hashFile(abs: string, size: bigint, signal?: AbortSignal): Promise<string> {
  if (size <= BigInt(SMALL_FILE)) return crypto.createHash('sha256').update(fsSync.readFileSync(abs)).digest('hex');
  const h = crypto.createHash('sha256');
  for await (const data of createReadStream(abs, { highWaterMark: 1024 * 1024, signal })) h.update(data as Buffer);
  return h.digest('hex');
}

/** The record of one entry, as text; the root digest hashes these, one per line. */
export function recordLine(e: VerifyEntry): string {
  return JSON.stringify([e.path, e.type, String(e.size), e.mode, e.user, e.group, e.mtime_us, e.sha256, e.link, e.hardlink]);
}

/**
 * Yield the records of a root in walk order, hashing up to a few files ahead, then the
 * root's digest.
 */
export async function* digestRoot(root: ResolvedRoot, opts: DigestOptions): AsyncGenerator<VerifyEntry | RootResult> {
  const rule = opts.owners[root.name];
  const rootHash = crypto.createHash('sha256');
  // Hard-link groups still open: forgotten once all their links are seen.
  const groups = new Map<string, { path: string; sha: Promise<string>; left: bigint }>();
  let present = false;
  let entries = 0;
  let sockets = 0;
  let read = 0;
  const queue: { rec: Promise<VerifyEntry>; e: WalkEntry }[] = [];
  const reader = opts.records?.quick ? DigestReader.open(opts.records.stateDir, root.name) : null;
  const writer = opts.records ? new DigestWriter(opts.records.stateDir, root.name) : null;

  const record = async (e: WalkEntry, sha: Promise<string> | null, hardlink: string): Promise<VerifyEntry> => {
    const uid = Number(e.st.uid);
    const gid = Number(e.st.gid);
    return {
      path: e.rel,
      type: e.type,
      size: e.type === 'file' ? String(e.st.size) : '0',
      mode: e.type === 'symlink' ? 0 : Number(e.st.mode & 0o7777n),
      user: rule?.user ?? nameOr(uid, opts.identity.userName(uid)),
      group: rule?.group ?? nameOr(gid, opts.identity.groupName(gid)),
      mtime_us: root.runtimeParents?.has(e.rel) ? '0' : String(e.st.mtimeNs / 1000n),
      sha256: sha ? await sha : '',
      link: e.type === 'symlink' ? await fs.readlink(e.abs) : '',
      hardlink,
    };
  };
  /** A file's digest: from its record while that holds (quick), else read. */
  const contentOf = (e: WalkEntry): Promise<string> => {
    const recorded = reader?.sha256(e.rel, e.st);
    if (recorded !== undefined) return Promise.resolve(recorded);
    read++;
    const sha = hashFile(e.abs, e.st.size, opts.signal);
    sha.catch(() => undefined);
    return sha;
  };
  const emit = async (): Promise<VerifyEntry> => {
    const q = queue.shift()!;
    const rec = await q.rec;
    rootHash.update(recordLine(rec) + '\n');
    entries++;
    if (writer && q.e.type === 'file' && rec.sha256) writer.append(digestRecord(q.e.rel, q.e.st, rec.sha256));
    return rec;
  };
  const cancelled = async (): Promise<CmError> => {
    // The reads under way end with the signal; wait for them so that no descriptor stays open.
    await Promise.allSettled(queue.map((q) => q.rec));
    return new CmError('transfer.cancelled', 'the caller went away; the digest was not finished');
  };

  try {
    for await (const e of walkRoot(root)) {
      if (opts.signal?.aborted) throw await cancelled();
      present = true;
      if (e.type === 'socket') {
        sockets++;
        continue;
      }
      let sha: Promise<string> | null = null;
      let hardlink = '';
      if (e.type === 'file') {
        const key = `${e.st.dev}:${e.st.ino}`;
        const g = e.st.nlink > 1n ? groups.get(key) : undefined;
        if (g) {
          hardlink = g.path;
          sha = g.sha;
          if (--g.left <= 0n) groups.delete(key);
        } else {
          sha = contentOf(e);
          if (e.st.nlink > 1n) groups.set(key, { path: e.rel, sha, left: e.st.nlink - 1n });
        }
      }
      const p = record(e, sha, hardlink);
      p.catch(() => undefined);
      queue.push({ rec: p, e });
      if (queue.length >= HASH_AHEAD) yield await emit();
    }
    while (queue.length) {
      if (opts.signal?.aborted) throw await cancelled();
      yield await emit();
    }
    // The walk saw every file of the root: its records replace the older ones.
    if (present) writer?.commit();
  } finally {
    reader?.close();
    writer?.close();
  }
  yield { root: root.name, present, entries, sha256: rootHash.digest('hex'), socketsSkipped: sockets, fromRecords: reader?.hits ?? 0, read };
}

/** Records per Verify message. */
const VERIFY_BATCH = 256;

/** The Verify answer as messages: each root's records in batches, its last batch with the root's digest. */
export async function* verifyBatches(roots: ResolvedRoot[], opts: DigestOptions): AsyncGenerator<VerifyBatch> {
  for (const root of roots) {
    let batch: VerifyEntry[] = [];
    for await (const item of digestRoot(root, opts)) {
      if ('present' in item) {
        yield { entries: batch, root_done: { root: item.root, present: item.present, entries: item.entries, sha256: item.sha256, sockets_skipped: item.socketsSkipped, from_records: item.fromRecords, read: item.read } };
        batch = [];
      } else {
        batch.push(item);
        if (batch.length >= VERIFY_BATCH) {
          yield { entries: batch };
          batch = [];
        }
      }
    }
  }
}
