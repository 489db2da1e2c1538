/**
 * The sending side of a pass: walks the requested roots and produces a pax tar stream,
 * cut into chunks of 256 KiB to 1 MiB. Every regular file is read once, hashed as it is
 * read, and followed by its SHA-256. Hard links go as links to the first path of their
 * group; sockets are skipped and counted; device nodes stop the pass before anything is sent.
 *
 * Live (initial) passes tolerate files that vanish or change while read: they are left out
 * and reported, the final pass will carry them. Strict (final) passes fail naming the path.
 */
import * as crypto from 'node:crypto';
import { constants as C } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as tar from 'tar-stream';

type HeaderArg = Partial<tar.Header> & { name: string; pax?: Record<string, string> };
import { CHUNK_MAX_BYTES, CHUNK_MIN_BYTES, CmError, PROTOCOL_VERSION, type Phase } from '../proto';
import { nameOr, type Identity } from './identity';
import type { ResolvedRoot } from './paths';
import { paxTime, walkRoot, type WalkEntry } from './walk';
import {
  BeginControl,
  CONTROL_NAME,
  EndControl,
  PAX_CONTROL,
  PAX_HARDLINK_LEADER,
  PAX_JSON,
  PAX_SHA256,
  PAX_SHA256_PATH,
  PAX_TORN,
  RootAnnouncement,
} from './wire-format';

export interface SendOptions {
  roots: ResolvedRoot[];
  phase: Phase;
  identity: Identity;
  /** Stop early (the receiver went away). */
  signal?: AbortSignal;
  /** Warnings for the agent's log (vanished or changed files in a live pass). */
  onWarning?: (msg: string, fields: Record<string, unknown>) => void;
}

/** Files up to this size are read whole before their header goes out. */
const SMALL_FILE = 1024 * 1024;
const READ_BLOCK = 1024 * 1024;
/** How far the walk may run ahead of the consumer of the stream, in bytes. */
const AHEAD_LIMIT = 4 * CHUNK_MAX_BYTES;
const LIVE_RETRIES = 3;
const REPORT_LIMIT = 1000;

type Prev = { path: string; sha256: string } | { path: string; torn: true } | null;

/** Announce every root: presence, totals, and the owner names it uses. */
export async function announceRoots(roots: ResolvedRoot[], identity: Identity): Promise<RootAnnouncement[]> {
  const out: RootAnnouncement[] = [];
  for (const root of roots) {
    const users = new Set<string>();
    const groups = new Set<string>();
    const seen = new Set<string>();
    let files = 0;
    let bytes = 0;
    let entries = 0;
    let present = false;
    for await (const e of walkRoot(root)) {
      present = true;
      if (e.type === 'device') {
        throw new CmError('transfer.device_node', `${'/' + e.rel} is a device node; cmmigrate never copies device nodes`, {
          hint: `remove it from the relay's state on the old host, or move it out of ${'/' + root.rel}, then run the same command again`,
        });
      }
      if (e.type === 'socket') continue;
      entries++;
      users.add(nameOr(Number(e.st.uid), identity.userName(Number(e.st.uid))));
      groups.add(nameOr(Number(e.st.gid), identity.groupName(Number(e.st.gid))));
      if (e.type === 'file') {
        if (e.st.nlink > 1n) {
          const key = `${e.st.dev}:${e.st.ino}`;
          if (seen.has(key)) continue;
          seen.add(key);
        }
        files++;
        bytes += Number(e.st.size);
      }
    }
    out.push({ name: root.name, rel: root.rel, present, files, bytes, entries, users: [...users].sort(), groups: [...groups].sort() });
  }
  return out;
}

/**
 * The tar stream of a pass, as chunks ready to send. Errors are thrown from the iterator
 * (CmError with the path), after which the stream must be abandoned.
 */
export async function* sendTar(opts: SendOptions): AsyncGenerator<Buffer> {
  const announced = await announceRoots(opts.roots, opts.identity);
  const missing = announced.filter((a) => !a.present && !opts.roots.find((r) => r.name === a.name)!.optional);
  if (missing.length > 0 && opts.phase === 'final') {
    const paths = missing.map((m) => '/' + m.rel).join(', ');
    throw new CmError('transfer.source_root_missing', `the source has no ${paths}`, {
      hint: 'check the agent\'s --root on the old host; a relay deployed by cmdeploy has all of these',
    });
  }
  const pack = tar.pack();
  let produced = 0;
  let consumed = 0;
  let wakeProducer: (() => void) | null = null;
  let producerError: unknown = null;
  let producerDone = false;

  const waitForConsumer = async (): Promise<void> => {
    while (produced - consumed > AHEAD_LIMIT && !opts.signal?.aborted) {
      await new Promise<void>((resolve) => (wakeProducer = resolve));
    }
    if (opts.signal?.aborted) throw new CmError('transfer.cancelled', 'the receiver went away');
  };
  const addEntry = (header: HeaderArg, body?: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      produced += 1536 + (body?.length ?? 0);
      pack.entry(header, body ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
    });

  const producer = (async () => {
    const begin: BeginControl = { protocol: PROTOCOL_VERSION, phase: opts.phase, roots: announced };
    await addEntry(controlHeader('begin', begin));
    const state = new SendState(opts);
    for (const root of opts.roots) {
      for await (const e of walkRoot(root, { onVanished: (rel) => state.vanished(rel) })) {
        await waitForConsumer();
        await state.entry(e, addEntry, (h, fd, size) => streamLargeFile(pack, h, fd, size, (n) => (produced += n), waitForConsumer));
      }
    }
    const end: EndControl = state.endControl();
    await addEntry(controlHeader('end', end, state.takePrev()));
    pack.finalize();
  })().then(
    () => {
      producerDone = true;
    },
    (err) => {
      producerError = err;
      producerDone = true;
      pack.destroy(err instanceof Error ? err : new Error(String(err)));
    },
  );

  let pending: Buffer[] = [];
  let pendingBytes = 0;
  try {
    for await (const piece of pack as AsyncIterable<Buffer>) {
      consumed += piece.length;
      if (wakeProducer) {
        const w: () => void = wakeProducer;
        wakeProducer = null;
        w();
      }
      pending.push(piece);
      pendingBytes += piece.length;
      while (pendingBytes >= CHUNK_MIN_BYTES) {
        const all = Buffer.concat(pending, pendingBytes);
        const out = all.subarray(0, Math.min(all.length, CHUNK_MAX_BYTES));
        const rest = all.subarray(out.length);
        pending = rest.length ? [rest] : [];
        pendingBytes = rest.length;
        yield out;
        if (rest.length < CHUNK_MIN_BYTES) break;
      }
    }
  } catch (err) {
    await producer;
    throw producerError ?? err;
  } finally {
    if (!producerDone) {
      // The consumer stopped early: let the producer run into the abort and finish.
      pack.destroy();
      const w = wakeProducer as (() => void) | null;
      if (w) w();
    }
  }
  await producer;
  if (producerError) throw producerError;
  if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
}

function controlHeader(kind: 'begin' | 'end', body: unknown, prev: Prev = null): HeaderArg {
  return {
    name: CONTROL_NAME,
    type: 'file',
    mode: 0o600,
    size: 0,
    mtime: new Date(0),
    pax: { ...prevPax(prev), [PAX_CONTROL]: kind, [PAX_JSON]: JSON.stringify(body) },
  };
}

function prevPax(prev: Prev): Record<string, string> {
  if (!prev) return {};
  if ('torn' in prev) return { [PAX_TORN]: '1', [PAX_SHA256_PATH]: prev.path };
  return { [PAX_SHA256]: prev.sha256, [PAX_SHA256_PATH]: prev.path };
}

type AddEntry = (header: HeaderArg, body?: Buffer) => Promise<void>;
type StreamLarge = (header: HeaderArg, fd: fs.FileHandle, size: number) => Promise<{ sha256: string; complete: boolean }>;

/** Per-pass bookkeeping of the sender: hard-link groups, the pending digest, reports. */
class SendState {
  private prev: Prev = null;
  private readonly leaders = new Map<string, { rel: string; left: bigint }>();
  private socketsSkipped = 0;
  private readonly vanishedList: string[] = [];
  private readonly changedList: string[] = [];
  private vanishedCount = 0;
  private changedCount = 0;
  private readonly strict: boolean;

  constructor(private readonly opts: SendOptions) {
    this.strict = opts.phase === 'final';
  }

  takePrev(): Prev {
    const p = this.prev;
    this.prev = null;
    return p;
  }

  vanished(rel: string): void {
    if (this.strict) {
      throw new CmError('transfer.source_changed', `/${rel} vanished while the final pass read it`, {
        hint: 'mail must be stopped on the old host during the final pass (step 3: cmdeploy run --disable-mail); stop what still writes there, then run the same command again',
      });
    }
    this.vanishedCount++;
    if (this.vanishedList.length < REPORT_LIMIT) this.vanishedList.push('/' + rel);
    this.opts.onWarning?.('source entry vanished during a live pass; the final pass settles it', { path: '/' + rel });
  }

  private changed(rel: string): void {
    if (this.strict) {
      throw new CmError('transfer.source_changed', `/${rel} changed while the final pass read it`, {
        hint: 'mail must be stopped on the old host during the final pass (step 3: cmdeploy run --disable-mail); stop what still writes there, then run the same command again',
      });
    }
    this.changedCount++;
    if (this.changedList.length < REPORT_LIMIT) this.changedList.push('/' + rel);
    this.opts.onWarning?.('source file changed while read during a live pass; left for the final pass', { path: '/' + rel });
  }

  endControl(): EndControl {
    return {
      sockets_skipped: this.socketsSkipped,
      vanished: this.vanishedList,
      changed: this.changedList,
      vanished_count: this.vanishedCount,
      changed_count: this.changedCount,
    };
  }

  private header(e: WalkEntry, type: HeaderArg['type'], extra: Partial<HeaderArg> = {}, pax: Record<string, string> = {}): HeaderArg {
    const { identity } = this.opts;
    const uid = Number(e.st.uid);
    const gid = Number(e.st.gid);
    const header: HeaderArg = {
      name: e.rel,
      type,
      mode: Number(e.st.mode & 0o7777n),
      uid: 0,
      gid: 0,
      uname: '',
      gname: '',
      mtime: new Date(Number(e.st.mtimeMs)),
      size: 0,
      ...extra,
      pax: {
        ...prevPax(this.takePrev()),
        uname: nameOr(uid, identity.userName(uid)),
        gname: nameOr(gid, identity.groupName(gid)),
        mtime: paxTime(e.st.mtimeNs),
        ...pax,
      },
    };
    return header;
  }

  async entry(e: WalkEntry, add: AddEntry, streamLarge: StreamLarge): Promise<void> {
    switch (e.type) {
      case 'socket':
        this.socketsSkipped++;
        return;
      case 'device':
        throw new CmError('transfer.device_node', `/${e.rel} is a device node; cmmigrate never copies device nodes`, {
          hint: 'remove it from the relay\'s state on the old host, then run the same command again',
        });
      case 'dir':
        await add(this.header(e, 'directory'));
        return;
      case 'fifo':
        await add(this.header(e, 'fifo'));
        return;
      case 'symlink': {
        let target: string;
        try {
          target = await fs.readlink(e.abs);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return this.vanished(e.rel);
          throw err;
        }
        await add(this.header(e, 'symlink', { linkname: target }, { linkpath: target }));
        return;
      }
      case 'file':
        await this.file(e, add, streamLarge);
        return;
    }
  }

  private async file(e: WalkEntry, add: AddEntry, streamLarge: StreamLarge): Promise<void> {
    const key = `${e.st.dev}:${e.st.ino}`;
    if (e.st.nlink > 1n) {
      const leader = this.leaders.get(key);
      if (leader) {
        await add(this.header(e, 'link', { linkname: leader.rel }, { linkpath: leader.rel }));
        leader.left -= 1n;
        if (leader.left <= 0n) this.leaders.delete(key);
        return;
      }
    }
    for (let attempt = 0; ; attempt++) {
      const result = await this.sendFileOnce(e, add, streamLarge);
      if (result === 'sent') {
        if (e.st.nlink > 1n) this.leaders.set(key, { rel: e.rel, left: e.st.nlink - 1n });
        return;
      }
      if (result === 'vanished') return this.vanished(e.rel);
      if (result === 'torn') return this.changed(e.rel);
      // 'changed' before anything was sent: look again, a few times.
      if (attempt + 1 >= LIVE_RETRIES || this.strict) return this.changed(e.rel);
      try {
        const st = await fs.lstat(e.abs, { bigint: true });
        if (!st.isFile()) return this.vanished(e.rel);
        e = { ...e, st };
      } catch {
        return this.vanished(e.rel);
      }
    }
  }

  /** Read and send one regular file: 'sent', or what went wrong on a live relay. */
  private async sendFileOnce(e: WalkEntry, add: AddEntry, streamLarge: StreamLarge): Promise<'sent' | 'vanished' | 'changed' | 'torn'> {
    let fd: fs.FileHandle;
    try {
      fd = await fs.open(e.abs, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ELOOP') return 'vanished';
      throw new CmError('transfer.source_unreadable', `cannot read /${e.rel}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const st = await fd.stat({ bigint: true });
      if (!st.isFile() || st.ino !== e.st.ino) return 'changed';
      const size = Number(st.size);
      const hl: Record<string, string> = st.nlink > 1n ? { [PAX_HARDLINK_LEADER]: '1' } : {};
      if (size <= SMALL_FILE) {
        const buf = Buffer.allocUnsafe(size + 1);
        let n = 0;
        while (n < buf.length) {
          const { bytesRead } = await fd.read(buf, n, buf.length - n, n);
          if (bytesRead === 0) break;
          n += bytesRead;
        }
        const after = await fd.stat({ bigint: true });
        if (n !== size || after.size !== st.size || after.mtimeNs !== st.mtimeNs) return 'changed';
        const body = buf.subarray(0, n);
        const sha256 = crypto.createHash('sha256').update(body).digest('hex');
        await add(this.header({ ...e, st }, 'file', { size }, hl), body);
        this.prev = { path: e.rel, sha256 };
        return 'sent';
      }
      const header = this.header({ ...e, st }, 'file', { size }, hl);
      const { sha256, complete } = await streamLarge(header, fd, size);
      const after = await fd.stat({ bigint: true });
      if (!complete || after.size !== st.size || after.mtimeNs !== st.mtimeNs) {
        this.prev = { path: e.rel, torn: true };
        return 'torn';
      }
      this.prev = { path: e.rel, sha256 };
      return 'sent';
    } finally {
      await fd.close();
    }
  }
}

/**
 * Send a large file's data into the pack under its header, in blocks, waiting for the
 * consumer between blocks. A file that shrank is padded to the declared size and reported
 * incomplete, so that the receiver discards it.
 */
async function streamLargeFile(
  pack: tar.Pack,
  header: HeaderArg,
  fd: fs.FileHandle,
  size: number,
  count: (n: number) => void,
  waitForConsumer: () => Promise<void>,
): Promise<{ sha256: string; complete: boolean }> {
  const hash = crypto.createHash('sha256');
  let complete = true;
  let streamError: Error | null = null;
  const done = new Promise<void>((resolve, reject) => {
    const entry = pack.entry(header, (err) => (err ? reject(err) : resolve()));
    (async () => {
      let off = 0;
      while (off < size) {
        const want = Math.min(READ_BLOCK, size - off);
        const buf = Buffer.allocUnsafe(want);
        let n = 0;
        if (complete) {
          const r = await fd.read(buf, 0, want, off);
          n = r.bytesRead;
        }
        if (n < want) {
          complete = false;
          buf.fill(0, n);
          n = want;
        }
        hash.update(buf);
        off += n;
        count(n);
        if (!entry.write(buf)) await new Promise<void>((r) => entry.once('drain', () => r()));
        await waitForConsumer();
      }
      (entry as unknown as { end(): void }).end();
    })().catch((err) => {
      streamError = err;
      entry.destroy(err);
    });
  });
  await done;
  if (streamError) throw streamError;
  return { sha256: hash.digest('hex'), complete };
}
