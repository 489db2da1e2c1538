/**
 * The digest `cmmigrate verify` compares: one record per entry of a root, in walk order,
 * over its path, type, size, mode, owner names (after the plan's owner rules), mtime to
 * the microsecond, content SHA-256, symlink target and hard-link group. Sockets are
 * counted and left out, as the transfer leaves them out.
 */
import * as crypto from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsSync from 'node:fs';
import type { RootName, VerifyEntry } from '../proto';
import * as fs from 'node:fs/promises';
import { DigestReader, DigestWriter, digestRecord } from './digest-records';
import { nameOr, type Identity } from './identity';
import type { ResolvedRoot } from './paths';
import { walkRoot, type WalkEntry } from './walk';

export interface DigestOptions {
  identity: Identity;
  owners: Partial<Record<RootName, { user: string; group: string }>>;
  /**
   * Where the passes keep their digest records (agent/digest-records.ts). With it, the
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

async function hashFile(abs: string, size: bigint): Promise<string> {
  if (size <= BigInt(SMALL_FILE)) return crypto.createHash('sha256').update(fsSync.readFileSync(abs)).digest('hex');
  const h = crypto.createHash('sha256');
  for await (const data of createReadStream(abs, { highWaterMark: 1024 * 1024 })) h.update(data as Buffer);
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
  const reader = opts.records?.quick ? DigestReader.open(opts.records.stateDir, root.name) : null;
  const writer = opts.records ? new DigestWriter(opts.records.stateDir, root.name) : null;
  const queue: { rec: Promise<VerifyEntry>; e: WalkEntry }[] = [];
  const emit = (rec: VerifyEntry, e: WalkEntry): VerifyEntry => {
    rootHash.update(recordLine(rec) + '\n');
    entries++;
    if (writer && e.type === 'file' && rec.sha256) writer.append(digestRecord(e.rel, e.st, rec.sha256));
    return rec;
  };

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
      mtime_us: String(e.st.mtimeNs / 1000n),
      sha256: sha ? await sha : '',
      link: e.type === 'symlink' ? await fs.readlink(e.abs) : '',
      hardlink,
    };
  };

  try {
    for await (const e of walkRoot(root)) {
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
          const recorded = reader?.sha256(e.rel, e.st);
          if (recorded !== undefined) sha = Promise.resolve(recorded);
          else {
            read++;
            sha = hashFile(e.abs, e.st.size);
            sha.catch(() => undefined);
          }
          if (e.st.nlink > 1n) groups.set(key, { path: e.rel, sha, left: e.st.nlink - 1n });
        }
      }
      const p = record(e, sha, hardlink);
      p.catch(() => undefined);
      queue.push({ rec: p, e });
      if (queue.length >= HASH_AHEAD) {
        const q = queue.shift()!;
        yield emit(await q.rec, q.e);
      }
    }
    while (queue.length) {
      const q = queue.shift()!;
      yield emit(await q.rec, q.e);
    }
    // The walk saw every file of the root: its records replace the older ones.
    if (present) writer?.commit();
  } finally {
    reader?.close();
    writer?.close();
  }
  yield { root: root.name, present, entries, sha256: rootHash.digest('hex'), socketsSkipped: sockets, fromRecords: reader?.hits ?? 0, read };
}
