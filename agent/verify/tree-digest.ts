/**
 * Folder agent/verify/: the digest `cmmigrate verify` compares (this file) and the digest
 * records that passes leave on both hosts so that a quick verify reads only what changed
 * (digest-records.ts). It imports only fs/ and wire/.
 *
 * The digest `cmmigrate verify` compares: one record per entry of a root, in walk order,
 * over its path, type, size, mode, owner names (after the plan's owner rules), mtime to
 * the microsecond, content SHA-256, symlink target and hard-link group. Sockets are
 * counted and left out, as the transfer leaves them out.
 */
import * as crypto from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsSync from 'node:fs';
import { CmError, verifyLine, type RootName, type VerifyBatch } from '../../proto';
import { DigestReader, DigestWriter, digestRecord } from './digest-records';
import { OwnerNames, type Identity } from '../fs/identity';
import type { ResolvedRoot } from '../fs/paths';
import { devOf, gidOf, inoOf, mtimeUsOf, nlinkOf, permOf, sizeOf, uidOf } from '../fs/stat-numbers';
import { walkBatches, type WalkEntry } from '../fs/walk';

export interface DigestOptions {
  identity: Identity;
  owners: Partial<Record<RootName, { user: string; group: string }>>;
  /** Stops the walk and the reads of files under way (their descriptors close). */
  signal?: AbortSignal;
  /**
   * Where this agent keeps its digest records (agent/verify/digest-records.ts). With it, the
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

/** An owner's name as a JSON string, made once per id. */
function jsonOf(cache: Map<number, string>, id: number, name: (id: number) => string): string {
  let json = cache.get(id);
  if (json === undefined) cache.set(id, (json = JSON.stringify(name(id))));
  return json;
}

/** Files up to this size are read whole, synchronously: one read, one buffer. */
const SMALL_FILE = 1024n * 1024n;

async function hashLarge(abs: string, signal?: AbortSignal): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const data of createReadStream(abs, { highWaterMark: 1024 * 1024, signal })) h.update(data as Buffer);
  return h.digest('hex');
}

/**
 * Yield the records of a root in walk order as their lines (proto/verify-record.ts), a walk
 * batch's lines at a time as UTF-8, then the root's digest over those bytes. A file's content comes
 * from its record while that holds (quick), else it is read; small files are read
 * synchronously, so an entry costs a promise only when a big file streams.
 */
export async function* digestRoot(root: ResolvedRoot, opts: DigestOptions): AsyncGenerator<Buffer | RootResult> {
  const rule = opts.owners[root.name];
  const rootHash = crypto.createHash('sha256');
  // Hard-link groups still open: forgotten once all their links are seen.
  const groups = new Map<string, { path: string; sha: string; left: number }>();
  let present = false;
  let entries = 0;
  let sockets = 0;
  let read = 0;
  const reader = opts.records?.quick ? DigestReader.open(opts.records.stateDir, root.name) : null;
  const writer = opts.records ? new DigestWriter(opts.records.stateDir, root.name) : null;
  const names = new OwnerNames(opts.identity);
  // Owner names as JSON strings, as the lines carry them: the plan's rule, else by id.
  const ruleUser = rule ? JSON.stringify(rule.user) : null;
  const ruleGroup = rule ? JSON.stringify(rule.group) : null;
  const userJson = new Map<number, string>();
  const groupJson = new Map<number, string>();
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
      let lines = '';
      for (const e of batch) {
        if (e.type === 'socket') {
          sockets++;
          continue;
        }
        let sha = '';
        let hardlink = '';
        const st = e.st;
        if (e.type === 'file') {
          const nlink = nlinkOf(st);
          const key = nlink > 1 ? `${devOf(st)}:${inoOf(st)}` : '';
          const g = key ? groups.get(key) : undefined;
          if (g) {
            hardlink = g.path;
            sha = g.sha;
            if (--g.left <= 0) groups.delete(key);
            if (writer) {
              const line = reader?.lineFor(e.rel, st);
              if (line) writer.appendLine(e.rel, line);
              else writer.append(digestRecord(e.rel, st, sha));
            }
          } else {
            sha = await contentOf(e);
            if (opts.signal?.aborted) throw cancelled();
            if (key) groups.set(key, { path: e.rel, sha, left: nlink - 1 });
          }
        }
        const user = ruleUser ?? jsonOf(userJson, uidOf(st), (id) => names.user(id));
        const group = ruleGroup ?? jsonOf(groupJson, gidOf(st), (id) => names.group(id));
        lines +=
          verifyLine(
            e.rel,
            e.type,
            e.type === 'file' ? String(sizeOf(st)) : '0',
            e.type === 'symlink' ? 0 : permOf(st),
            user,
            group,
            root.runtimeParents?.has(e.rel) ? '0' : String(mtimeUsOf(st)),
            sha,
            e.type === 'symlink' ? fsSync.readlinkSync(e.abs) : '',
            hardlink,
          ) + '\n';
        entries++;
      }
      if (lines) {
        // Encoded once: the root digest hashes these bytes and the Verify answer sends them.
        const bytes = Buffer.from(lines, 'utf8');
        rootHash.update(bytes);
        yield bytes;
      }
    }
    if (opts.signal?.aborted) throw cancelled();
    // The walk saw every file of the root: its records replace the older ones.
    if (present) writer?.commit();
  } finally {
    reader?.close();
    writer?.close();
  }
  yield { root: root.name, present, entries, sha256: rootHash.digest('hex'), socketsSkipped: sockets, fromRecords: reader?.hits ?? 0, read };
}

/**
 * The Verify answer as messages: each root's record lines a walk batch at a time, the root's
 * digest on its last; with `digestsOnly`, one message per root with its digest and no lines.
 */
export async function* verifyBatches(roots: ResolvedRoot[], opts: DigestOptions, digestsOnly = false): AsyncGenerator<VerifyBatch> {
  for (const root of roots) {
    // One batch held back, so that the root's digest travels with the root's last lines.
    let held: Buffer = Buffer.alloc(0);
    for await (const item of digestRoot(root, opts)) {
      if (Buffer.isBuffer(item)) {
        if (digestsOnly) continue;
        if (held.length) yield { lines: held };
        held = item;
        continue;
      }
      yield { lines: held, root_done: { root: item.root, present: item.present, entries: item.entries, sha256: item.sha256, sockets_skipped: item.socketsSkipped, from_records: item.fromRecords, read: item.read } };
      held = Buffer.alloc(0);
    }
  }
}
