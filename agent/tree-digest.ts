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
import { DigestReader, DigestWriter, digestRecord } from './digest-records';
import { OwnerNames, type Identity } from './identity';
import type { ResolvedRoot } from './paths';
import { walkBatches, type WalkEntry } from './walk';

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

/** Files up to this size are read whole, synchronously: one read, one buffer. */
const SMALL_FILE = 1024n * 1024n;

/** The root digest is fed this much record text at a time: one hash update per entry costs more than the hashing. */
const ROOT_HASH_CHUNK = 64 * 1024;

async function hashLarge(abs: string, signal?: AbortSignal): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const data of createReadStream(abs, { highWaterMark: 1024 * 1024, signal })) h.update(data as Buffer);
  return h.digest('hex');
}

/** The record of one entry, as text; the root digest hashes these, one per line. */
export function recordLine(e: VerifyEntry): string {
  return JSON.stringify([e.path, e.type, String(e.size), e.mode, e.user, e.group, e.mtime_us, e.sha256, e.link, e.hardlink]);
}

/**
 * Yield the records of a root in walk order, in the walk's batches, then the root's digest.
 * A file's content comes from its record while that holds (quick), else it is read; small
 * files are read synchronously, so an entry costs a promise only when a big file streams.
 */
export async function* digestRoot(root: ResolvedRoot, opts: DigestOptions): AsyncGenerator<VerifyEntry[] | RootResult> {
  const rule = opts.owners[root.name];
  const rootHash = crypto.createHash('sha256');
  let pending = '';
  // Hard-link groups still open: forgotten once all their links are seen.
  const groups = new Map<string, { path: string; sha: string; left: bigint }>();
  let present = false;
  let entries = 0;
  let sockets = 0;
  let read = 0;
  const reader = opts.records?.quick ? DigestReader.open(opts.records.stateDir, root.name) : null;
  const writer = opts.records ? new DigestWriter(opts.records.stateDir, root.name) : null;
  const names = new OwnerNames(opts.identity);
  const cancelled = (): CmError => new CmError('transfer.cancelled', 'the caller went away; the digest was not finished');

  /** A file's digest: from its record while that holds (quick), else read; its record is written either way. */
  const contentOf = async (e: WalkEntry): Promise<string> => {
    const recorded = reader?.sha256(e.rel, e.st);
    if (recorded !== undefined) {
      if (writer) {
        if (reader!.hitLine !== null) writer.appendLine(e.rel, reader!.hitLine);
        else writer.append(digestRecord(e.rel, e.st, recorded));
      }
      return recorded;
    }
    read++;
    let sha: string;
    if (e.st.size <= SMALL_FILE) {
      sha = crypto.createHash('sha256').update(fsSync.readFileSync(e.abs)).digest('hex');
    } else {
      try {
        sha = await hashLarge(e.abs, opts.signal);
      } catch (err) {
        if (opts.signal?.aborted) throw cancelled();
        throw err;
      }
    }
    writer?.append(digestRecord(e.rel, e.st, sha));
    return sha;
  };

  try {
    for await (const batch of walkBatches(root)) {
      if (opts.signal?.aborted) throw cancelled();
      present = true;
      const out: VerifyEntry[] = [];
      for (const e of batch) {
        if (e.type === 'socket') {
          sockets++;
          continue;
        }
        let sha = '';
        let hardlink = '';
        if (e.type === 'file') {
          const st = e.st;
          const key = st.nlink > 1n ? `${st.dev}:${st.ino}` : '';
          const g = key ? groups.get(key) : undefined;
          if (g) {
            hardlink = g.path;
            sha = g.sha;
            if (--g.left <= 0n) groups.delete(key);
            if (writer) {
              const line = reader?.lineFor(e.rel, st);
              if (line) writer.appendLine(e.rel, line);
              else writer.append(digestRecord(e.rel, st, sha));
            }
          } else {
            sha = await contentOf(e);
            if (opts.signal?.aborted) throw cancelled();
            if (key) groups.set(key, { path: e.rel, sha, left: st.nlink - 1n });
          }
        }
        const uid = Number(e.st.uid);
        const gid = Number(e.st.gid);
        const rec: VerifyEntry = {
          path: e.rel,
          type: e.type,
          size: e.type === 'file' ? String(e.st.size) : '0',
          mode: e.type === 'symlink' ? 0 : Number(e.st.mode & 0o7777n),
          user: rule?.user ?? names.user(uid),
          group: rule?.group ?? names.group(gid),
          mtime_us: root.runtimeParents?.has(e.rel) ? '0' : String(e.st.mtimeNs / 1000n),
          sha256: sha,
          link: e.type === 'symlink' ? fsSync.readlinkSync(e.abs) : '',
          hardlink,
        };
        pending += recordLine(rec) + '\n';
        if (pending.length >= ROOT_HASH_CHUNK) {
          rootHash.update(pending);
          pending = '';
        }
        entries++;
        out.push(rec);
      }
      if (out.length) yield out;
    }
    if (opts.signal?.aborted) throw cancelled();
    // The walk saw every file of the root: its records replace the older ones.
    if (present) writer?.commit();
  } finally {
    reader?.close();
    writer?.close();
  }
  rootHash.update(pending);
  yield { root: root.name, present, entries, sha256: rootHash.digest('hex'), socketsSkipped: sockets, fromRecords: reader?.hits ?? 0, read };
}

/** Records per Verify message. */
const VERIFY_BATCH = 256;

/** The Verify answer as messages: each root's records in batches, its last batch with the root's digest. */
export async function* verifyBatches(roots: ResolvedRoot[], opts: DigestOptions): AsyncGenerator<VerifyBatch> {
  for (const root of roots) {
    let batch: VerifyEntry[] = [];
    for await (const item of digestRoot(root, opts)) {
      if (!Array.isArray(item)) {
        yield { entries: batch, root_done: { root: item.root, present: item.present, entries: item.entries, sha256: item.sha256, sockets_skipped: item.socketsSkipped, from_records: item.fromRecords, read: item.read } };
        batch = [];
        continue;
      }
      for (const e of item) {
        batch.push(e);
        if (batch.length >= VERIFY_BATCH) {
          yield { entries: batch };
          batch = [];
        }
      }
    }
  }
}
