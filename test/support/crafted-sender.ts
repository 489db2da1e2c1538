/**
 * A hostile old agent for security tests: a real gRPC server with an agent certificate of
 * the migration's CA (so that the real receiving agent accepts it as its peer) that answers
 * `List` and `Fetch` with whatever a test crafted.
 *
 * The receiver pulls a pass in two calls: `List` (the sender's entries, metadata only: the
 * paths, types, symlink targets and hard-link leaders that the receiver will create) and
 * `Fetch` (a pax tar stream with the content of the files the receiver asks for, each
 * file's SHA-256 in the pax header of the next entry, a `digest` control entry when the
 * sender has nothing else to send, an `end` control entry last). `listing()` builds the
 * first; `CraftedTar` builds the second with tar-stream's `pack` for every well-formed entry
 * and lets a test lie where it must: a wrong digest, a size field that lies, raw bytes,
 * truncation.
 */
import * as crypto from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import * as tar from 'tar-stream';
import {
  agentService,
  PROTOCOL_VERSION,
  SERVER_OPTIONS,
  type AgentHandlers,
  type FetchRequest__Output,
  type ListBatch,
  type ListEntry,
} from '../../proto';
import type { ListRequest__Output } from '../../proto/generated/cmmigrate/v1/ListRequest';
import { loadTls } from '../../controller/tls-material';
import { CONTROL_NAME, PAX_CONTROL, PAX_SHA256, PAX_SHA256_PATH } from '../../agent/wire/wire-format';

/** What the crafted sender answers to the calls of one pass. */
export interface CraftedPass {
  /** The List answer, message by message. */
  list: ListBatch[];
  /** The tar bytes of the Fetch answer (default: an empty stream). */
  fetch?: Buffer;
  /** Bytes per Chunk message of the Fetch answer; default: all in one message (under 2 MiB). */
  chunkBytes?: number;
  /** Keep the List call open after its messages, as a stalled sender would. */
  stallList?: boolean;
  /**
   * When the Fetch answer ends: `data` (default) right after its bytes, as a sender that
   * broke off would; `wants` once the receiver has asked for all it wants, as the real
   * sender does (a receiver still waiting for data then waits for good).
   */
  endFetch?: 'data' | 'wants';
}

export interface CraftedSender {
  /** host:port it listens on. */
  address: string;
  /** The answers to the next calls. */
  pass: CraftedPass;
  /** Every List request, in order. */
  lists: ListRequest__Output[];
  /** Every Fetch call: the paths it asked for. */
  fetches: string[][];
  stop(): Promise<void>;
}

/**
 * Start a crafted sender on `host` (a loopback address that the certificate in `tlsDir`,
 * an agent directory made by `cmmigrate init` or `ensurePki`, names). `serverOptions`
 * override the agents' (a larger send limit, to send oversized messages).
 */
export async function startCraftedSender(host: string, tlsDir: string, serverOptions: grpc.ServerOptions = {}): Promise<CraftedSender> {
  const m = await loadTls(tlsDir, 'agent');
  const server = new grpc.Server({ ...SERVER_OPTIONS, ...serverOptions });
  const sender: CraftedSender = {
    address: '',
    pass: { list: [] },
    lists: [],
    fetches: [],
    stop: async () => server.forceShutdown(),
  };
  // grpc-js answers the methods left out with UNIMPLEMENTED.
  const handlers: Pick<AgentHandlers, 'List' | 'Fetch'> = {
    List: (call) => {
      sender.lists.push(call.request as ListRequest__Output);
      const pass = sender.pass;
      void (async () => {
        for (const batch of pass.list) {
          if (call.cancelled) return;
          if (!call.write(batch)) await new Promise<void>((resolve) => call.once('drain', () => resolve()));
        }
        if (!pass.stallList) call.end();
      })();
    },
    Fetch: (call) => {
      const wants: string[] = [];
      sender.fetches.push(wants);
      call.on('data', (req: FetchRequest__Output) => wants.push(...req.items.map((i) => i.path)));
      call.on('error', () => undefined); // the receiver may cancel
      const pass = sender.pass;
      const data = pass.fetch ?? Buffer.alloc(0);
      void (async () => {
        const step = pass.chunkBytes ?? Math.max(data.length, 1);
        for (let off = 0; off < data.length; off += step) {
          if (call.cancelled) return;
          if (!call.write({ data: data.subarray(off, off + step) })) await new Promise<void>((resolve) => call.once('drain', () => resolve()));
        }
        if (pass.endFetch !== 'wants' || call.readableEnded) call.end();
        else call.once('end', () => call.end());
      })();
    },
  };
  server.addService(agentService(), handlers);
  const creds = grpc.ServerCredentials.createSsl(m.ca, [{ private_key: m.key, cert_chain: m.cert }], true);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:0`, creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  sender.address = `${host}:${port}`;
  return sender;
}

// ---------------------------------------------------------------------------------------
// Listings

export const MAILBOXES = 'home/vmail/mail';
/** The mtime every crafted entry carries, in nanoseconds and as pax writes it. */
export const CRAFTED_MTIME_NS = '1775000000123456789';
export const CRAFTED_MTIME_PAX = '1775000000.123456789';

let nextIno = 1;

/** One listed entry, owned by vmail, with the crafted mtime. */
export function listed(path: string, type: string, extra: Partial<ListEntry> = {}): ListEntry {
  return {
    path,
    type,
    size: 0,
    mtime_ns: CRAFTED_MTIME_NS,
    mode: type === 'dir' ? 0o700 : type === 'symlink' ? 0o777 : 0o600,
    user: 'vmail',
    group: 'vmail',
    link: '',
    ino: `64769:${nextIno++}`,
    leader: '',
    nlink: 1,
    ...extra,
  };
}

/**
 * The List answer of an initial pass: the first batch (protocol, the mailboxes root's
 * announcement), the entries, and the root's end. The entries must start with the root.
 */
export function listing(entries: ListEntry[], over: { protocol?: string; roots?: ListBatch['roots']; rootEnd?: boolean } = {}): ListBatch[] {
  const files = entries.filter((e) => e.type === 'file' && !e.leader);
  const head: ListBatch = {
    protocol: over.protocol ?? PROTOCOL_VERSION,
    roots: over.roots ?? [mailboxesRoot({ files: files.length, entries: entries.length })],
  };
  const out: ListBatch[] = [head, { entries }];
  if (over.rootEnd !== false) out.push({ root_end: { sockets_skipped: 0, vanished: 0, vanished_paths: [] } });
  return out;
}

/** The announcement of the mailboxes root. */
export function mailboxesRoot(extra: Partial<NonNullable<ListBatch['roots']>[number]> = {}): NonNullable<ListBatch['roots']>[number] {
  return { name: 'mailboxes', rel: MAILBOXES, present: true, files: 0, bytes: 0, entries: 1, users: ['vmail'], groups: ['vmail'], ...extra };
}

// ---------------------------------------------------------------------------------------
// Tar streams

type Header = Partial<tar.Header> & { name: string; pax?: Record<string, string> };

export function sha256(data: Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** One entry packed by tar-stream: its headers, then its data padded to 512 bytes. */
async function packOne(header: Header, body: Buffer): Promise<Buffer> {
  const pack = tar.pack();
  const out: Buffer[] = [];
  pack.on('data', (d: unknown) => out.push(d as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  await new Promise<void>((resolve, reject) => pack.entry(header, body, (err) => (err ? reject(err) : resolve())));
  pack.finalize();
  await done;
  const all = Buffer.concat(out);
  return all.subarray(0, all.length - 1024); // without the end-of-archive blocks
}

const padded = (n: number): number => Math.ceil(n / 512) * 512;

/** Rewrite the size field of the ustar header at `offset` and fix its checksum. */
export function setUstarSize(buf: Buffer, offset: number, size: number): void {
  buf.write(size.toString(8).padStart(11, '0') + '\0', offset + 124, 12, 'latin1');
  buf.fill(' ', offset + 148, offset + 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += buf[offset + i];
  buf.write(sum.toString(8).padStart(6, '0') + '\0 ', offset + 148, 8, 'latin1');
}

/**
 * A Fetch answer built entry by entry, as agent/send/tar-writer.ts sends it. The digest of each file
 * goes into the pax header of the next entry; `file(..., { sha256 })` lies about it.
 */
export class CraftedTar {
  private readonly parts: (() => Promise<Buffer>)[] = [];
  private prev: { path: string; sha256: string } | null = null;

  /** A regular file followed (in the next entry) by its SHA-256, or by `opts.sha256`. */
  file(name: string, data: Buffer, opts: { sha256?: string; mode?: number } = {}): this {
    this.entry({ name, type: 'file', mode: opts.mode ?? 0o600 }, data);
    this.prev = { path: name, sha256: opts.sha256 ?? sha256(data) };
    return this;
  }

  /** Any entry, with owner names, mtime and the pending digest in its pax header. */
  entry(header: Header, body: Buffer = Buffer.alloc(0)): this {
    const full: Header = {
      uid: 0,
      gid: 0,
      mtime: new Date(1_775_000_000_000),
      ...header,
      pax: { ...this.takePrev(), uname: 'vmail', gname: 'vmail', mtime: CRAFTED_MTIME_PAX, ...header.pax },
    };
    this.parts.push(() => packOne(full, body));
    return this;
  }

  /**
   * A regular file whose size field says `declared` while `data` is what follows it (padded
   * to 512 bytes); the next entry carries the digest of `data`.
   */
  lyingFile(name: string, data: Buffer, declared: number): this {
    const header: Header = { name, type: 'file', mode: 0o600, uid: 0, gid: 0, mtime: new Date(1_775_000_000_000) };
    header.pax = { ...this.takePrev(), uname: 'vmail', gname: 'vmail', mtime: CRAFTED_MTIME_PAX };
    this.parts.push(async () => {
      const seg = Buffer.from(await packOne(header, data));
      setUstarSize(seg, seg.length - padded(data.length) - 512, declared);
      return seg;
    });
    this.prev = { path: name, sha256: sha256(data) };
    return this;
  }

  /** A control entry (`digest`, `skipped`, `end`), carrying the pending digest. */
  control(kind: string, pax: Record<string, string> = {}): this {
    const header: Header = { name: CONTROL_NAME, type: 'file', mode: 0o600, mtime: new Date(0) };
    header.pax = { ...this.takePrev(), [PAX_CONTROL]: kind, ...pax };
    this.parts.push(() => packOne(header, Buffer.alloc(0)));
    return this;
  }

  end(): this {
    return this.control('end');
  }

  /** Raw bytes, as they are. */
  raw(data: Buffer): this {
    this.parts.push(async () => data);
    return this;
  }

  /** The stream, ended by tar's two zero blocks unless `trailer` is false. */
  async bytes(opts: { trailer?: boolean } = {}): Promise<Buffer> {
    const bufs: Buffer[] = [];
    for (const p of this.parts) bufs.push(await p());
    if (opts.trailer !== false) bufs.push(Buffer.alloc(1024));
    return Buffer.concat(bufs);
  }

  private takePrev(): Record<string, string> {
    const p = this.prev;
    this.prev = null;
    return p ? { [PAX_SHA256]: p.sha256, [PAX_SHA256_PATH]: p.path } : {};
  }
}
