/**
 * What a running relay does to its mailboxes, applied to a generated tree (relay-tree.ts):
 *
 * - `relayActivity` changes the tree as hours of Dovecot and Postfix use would between two
 *   passes (flag renames in cur/, new/ -> cur/ moves, deliveries, expunges, appended index
 *   logs and maildirsize, rewritten dovecot-uidlist, logins, a new and a removed address)
 *   and returns exactly what it changed, so a test can say what an incremental pass must
 *   send, rename and delete. The same seed on the same tree gives the same changes, byte
 *   for byte, with every mtime (directories included) set from `now`, never the clock.
 * - `startWriter` keeps appending to, creating and deleting files under one mailbox until
 *   stopped, for passes that run while the relay is live; it remembers every state each
 *   file had, so a test can tell a consistent copy from a torn one.
 *
 * Paths in reports are host paths (`/home/vmail/mail/...`). Needs root (chown).
 */
import { createCipheriv, createHash, type Cipher } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { readIdentity } from './tree-snapshot';
import { Rng } from './rng';

export interface ActivityOptions {
  /** The host root of the tree. */
  root: string;
  /** Default 1. */
  seed?: number;
  /** Default `mail.example.org`. */
  domain?: string;
  /** Default `/home/vmail/mail`. */
  mailboxesDir?: string;
  /** Messages in cur/ that gain a flag (`X:2,` -> `X:2,S`). Default 6. */
  flagRenames?: number;
  /** Messages read for the first time (`new/X` -> `cur/X:2,`). Default 4. */
  moves?: number;
  /** Delivered messages (new files in an INBOX new/). Default 5. */
  newMessages?: number;
  /** Delivered to two or three addresses at once: one file, hard-linked. Default 0. */
  sharedMessages?: number;
  /** Expunged messages. Default 4. */
  deletedMessages?: number;
  /** dovecot.index.log files appended to. Default 3. */
  appendedLogs?: number;
  /** Logins: the `password` file's mtime moves (content unchanged). Default 2. */
  logins?: number;
  /** New addresses, each a whole Maildir. Default 1. */
  newAddresses?: number;
  /** Removed addresses (the whole directory goes). Default 1. */
  removedAddresses?: number;
  /**
   * Whether renamed, moved and deleted messages may be hard-linked ones (several
   * recipients): `exclude` (default) keeps counts of a pass exact, `only` picks nothing else.
   */
  linked?: 'exclude' | 'include' | 'only';
  /** Address directories (host paths) to leave alone. */
  exclude?: string[];
  /** Epoch ms at the end of the activity; changes fall in the 6 hours before. Default relay-tree's now + 6 h. */
  now?: number;
}

export interface Renamed {
  from: string;
  to: string;
  size: number;
  kind: 'flag' | 'move';
  /** The file had other names (hard links) when it was renamed. */
  linked: boolean;
}

export interface FileChange {
  path: string;
  /** The file's size afterwards. */
  size: number;
}

export interface Added extends FileChange {
  /** Further names of the same file (a delivery to several recipients). */
  links: string[];
}

export interface Appended extends FileChange {
  /** Bytes appended. */
  bytes: number;
}

export interface AddressChange {
  /** The address directory. */
  path: string;
  /** Every entry below it and itself: directories and file names (hard links included). */
  entries: string[];
  /** Its regular files. */
  files: FileChange[];
  /** Content bytes, each inode once. */
  bytes: number;
}

export interface ActivityReport {
  renamed: Renamed[];
  added: Added[];
  deleted: FileChange[];
  appended: Appended[];
  /** Files rewritten whole (dovecot-uidlist, via dovecot-uidlist.lock and a rename). */
  rewritten: FileChange[];
  /** Files whose mtime moved, content unchanged (`password`: a login). */
  touched: FileChange[];
  newAddresses: AddressChange[];
  removedAddresses: AddressChange[];
  /** Content of delivered messages, each file once. */
  addedBytes: number;
  /** Bytes appended, over all appended files. */
  appendedBytes: number;
  /**
   * Content bytes a pass that sends whole changed files must send: added messages, appended,
   * rewritten and touched files in full, new addresses. Renames and deletes add nothing.
   */
  changedBytes: number;
}

/** relay-tree.ts's default "now". */
const TREE_NOW_MS = 1_775_000_000_000;
const HOUR_US = 3_600_000_000;
const KIB = 1024;
const MIB = 1024 * KIB;
/** Maildir flags in the order they are written. */
const FLAGS = ['D', 'F', 'P', 'R', 'S', 'T'];
const ADDED_FLAGS = ['S', 'S', 'S', 'R', 'F'];
const CRYPT_ALPHABET = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

interface Msg {
  /** Host path. */
  path: string;
  /** Host path of the Maildir folder. */
  folder: string;
  sub: 'cur' | 'new';
  base: string;
  /** The part after `:2,`; undefined in new/. */
  flags: string | undefined;
  size: number;
  nlink: number;
}

interface Address {
  path: string;
  folders: string[];
  messages: Msg[];
}

/** Apply hours of relay use to the tree below `opts.root`; see the module comment. */
export async function relayActivity(opts: ActivityOptions): Promise<ActivityReport> {
  const a = new Activity(opts);
  await a.run();
  return a.report;
}

class Activity {
  readonly report: ActivityReport = {
    renamed: [],
    added: [],
    deleted: [],
    appended: [],
    rewritten: [],
    touched: [],
    newAddresses: [],
    removedAddresses: [],
    addedBytes: 0,
    appendedBytes: 0,
    changedBytes: 0,
  };
  private readonly root: string;
  private readonly seed: number;
  private readonly domain: string;
  private readonly domainDir: string;
  private readonly host: string;
  private readonly nowUs: number;
  private readonly rng: Rng;
  private readonly content: Keystream;
  /** Directory host path -> the newest change in it, in microseconds. */
  private readonly dirTimes = new Map<string, number>();
  /** Folder host path -> messages delivered into it (for dovecot-uidlist). */
  private readonly delivered = new Map<string, string[]>();
  /** Address host path -> sizes delivered (for maildirsize). */
  private readonly quota = new Map<string, number[]>();
  private vmail = { uid: 0, gid: 0 };

  constructor(private readonly o: ActivityOptions) {
    this.root = path.resolve(o.root);
    this.seed = o.seed ?? 1;
    this.domain = o.domain ?? 'mail.example.org';
    this.domainDir = `${o.mailboxesDir ?? '/home/vmail/mail'}/${this.domain}`;
    this.host = this.domain.split('.')[0];
    this.nowUs = (o.now ?? TREE_NOW_MS + 6 * 3_600_000) * 1000;
    this.rng = new Rng(seedOf(`relay-activity ${this.seed}`));
    this.content = new Keystream(`relay-activity ${this.seed}`);
  }

  async run(): Promise<void> {
    this.vmail = await vmailIds(this.root);
    const exclude = new Set(this.o.exclude ?? []);
    const names = (await fs.readdir(this.abs(this.domainDir))).sort();
    const candidates = names.map((n) => `${this.domainDir}/${n}`).filter((p) => !exclude.has(p));
    const removed = this.rng.shuffle(candidates).slice(0, this.o.removedAddresses ?? 1).sort();
    const addresses: Address[] = [];
    for (const p of candidates) if (!removed.includes(p)) addresses.push(await this.scan(p));
    if (!addresses.length) throw new Error(`relayActivity: no address left to change below ${this.domainDir}`);

    const used = new Set<string>();
    const linkOk = (m: Msg): boolean => {
      const mode = this.o.linked ?? 'exclude';
      return mode === 'include' || (mode === 'only' ? m.nlink > 1 : m.nlink === 1);
    };
    const pick = (n: number, ok: (m: Msg) => boolean): Msg[] => {
      const all = addresses.flatMap((x) => x.messages).filter((m) => !used.has(m.path) && linkOk(m) && ok(m));
      const out = this.rng.shuffle(all).slice(0, n);
      if (out.length < n) throw new Error(`relayActivity: only ${out.length} messages fit, ${n} asked`);
      out.forEach((m) => used.add(m.path));
      return out.sort((x, y) => (x.path < y.path ? -1 : 1));
    };

    for (const m of pick(this.o.flagRenames ?? 6, (x) => x.sub === 'cur' && x.flags !== undefined && ADDED_FLAGS.some((f) => !x.flags!.includes(f)))) {
      const flags = addFlag(m.flags!, this.rng)!;
      await this.rename(m, `${m.folder}/cur/${m.base}:2,${flags}`, 'flag');
    }
    for (const m of pick(this.o.moves ?? 4, (x) => x.sub === 'new')) {
      await this.rename(m, `${m.folder}/cur/${m.base}:2,${this.rng.chance(0.7) ? '' : 'S'}`, 'move');
    }
    for (const m of pick(this.o.deletedMessages ?? 4, () => true)) {
      await fs.unlink(this.abs(m.path));
      this.report.deleted.push({ path: m.path, size: m.size });
      this.touchDir(path.posix.dirname(m.path), this.when());
    }

    for (let k = 0; k < (this.o.newMessages ?? 5); k++) await this.deliver([this.rng.pick(addresses)]);
    for (let k = 0; k < (this.o.sharedMessages ?? 0); k++) {
      if (addresses.length < 2) throw new Error('relayActivity: sharedMessages needs two addresses');
      const to = this.rng.shuffle(addresses).slice(0, Math.min(addresses.length, this.rng.int(2, 3)));
      await this.deliver(to.sort((x, y) => (x.path < y.path ? -1 : 1)));
    }
    await this.writeUidlists();
    await this.writeQuotas();

    const folders = this.rng.shuffle(addresses.flatMap((x) => x.folders));
    for (const folder of folders.slice(0, this.o.appendedLogs ?? 3).sort()) {
      await this.append(`${folder}/dovecot.index.log`, this.rng.int(64, 4 * KIB));
    }
    for (const x of this.rng.shuffle(addresses).slice(0, this.o.logins ?? 2).sort((p, q) => (p.path < q.path ? -1 : 1))) {
      const file = `${x.path}/password`;
      await setTime(this.abs(file), this.when());
      this.report.touched.push({ path: file, size: (await fs.stat(this.abs(file))).size });
    }

    for (let k = 0; k < (this.o.newAddresses ?? 1); k++) await this.newAddress(new Set(names));
    for (const p of removed) await this.removeAddress(p);

    // Directories last, deepest first: their mtimes are those of their newest change.
    const dirs = [...this.dirTimes.keys()].sort((x, y) => y.split('/').length - x.split('/').length || (x < y ? -1 : 1));
    for (const d of dirs) await setTime(this.abs(d), this.dirTimes.get(d)!);

    const r = this.report;
    r.addedBytes = r.added.reduce((n, f) => n + f.size, 0);
    r.appendedBytes = r.appended.reduce((n, f) => n + f.bytes, 0);
    r.changedBytes =
      r.addedBytes +
      r.appended.reduce((n, f) => n + f.size, 0) +
      r.rewritten.reduce((n, f) => n + f.size, 0) +
      r.touched.reduce((n, f) => n + f.size, 0) +
      r.newAddresses.reduce((n, x) => n + x.bytes, 0);
  }

  private async scan(addr: string): Promise<Address> {
    const folders = [addr];
    for (const n of (await fs.readdir(this.abs(addr))).sort()) {
      if (n.startsWith('.') && (await fs.lstat(this.abs(`${addr}/${n}`))).isDirectory()) folders.push(`${addr}/${n}`);
    }
    const messages: Msg[] = [];
    for (const folder of folders) {
      for (const sub of ['cur', 'new'] as const) {
        let names: string[];
        try {
          names = (await fs.readdir(this.abs(`${folder}/${sub}`))).sort();
        } catch {
          continue;
        }
        for (const name of names) {
          const p = `${folder}/${sub}/${name}`;
          const st = await fs.lstat(this.abs(p));
          if (!st.isFile()) continue;
          const [base, flags] = name.split(':2,');
          messages.push({ path: p, folder, sub, base, flags: sub === 'cur' ? (flags ?? '') : undefined, size: st.size, nlink: st.nlink });
        }
      }
    }
    return { path: addr, folders, messages };
  }

  private async rename(m: Msg, to: string, kind: 'flag' | 'move'): Promise<void> {
    await fs.rename(this.abs(m.path), this.abs(to)); // keeps the mtime, as Dovecot's rename does
    this.report.renamed.push({ from: m.path, to, size: m.size, kind, linked: m.nlink > 1 });
    const t = this.when();
    this.touchDir(path.posix.dirname(m.path), t);
    this.touchDir(path.posix.dirname(to), t);
  }

  /** One delivery: a message in the INBOX new/ of each recipient, one file hard-linked. */
  private async deliver(to: Address[]): Promise<void> {
    const size = this.rng.chance(0.1) ? this.rng.logUniform(64 * KIB, 1 * MIB) : this.rng.int(1 * KIB, 16 * KIB);
    const us = this.when();
    const base = `${Math.floor(us / 1_000_000)}.M${us % 1_000_000}P${this.rng.int(300, 4_194_303)}.${this.host},S=${size},W=${size + Math.ceil(size / 76)}`;
    const [first, ...rest] = to.map((x) => `${x.path}/new/${base}`);
    await this.writeFile(first, this.content.bytes(size), us);
    for (const p of rest) await fs.link(this.abs(first), this.abs(p));
    this.report.added.push({ path: first, size, links: rest });
    for (const x of to) {
      this.touchDir(`${x.path}/new`, us);
      this.delivered.set(x.path, [...(this.delivered.get(x.path) ?? []), base]);
      this.quota.set(x.path, [...(this.quota.get(x.path) ?? []), size]);
    }
  }

  /** Dovecot gives delivered messages UIDs: new lines, a new next-UID, written via the lock file. */
  private async writeUidlists(): Promise<void> {
    for (const [folder, bases] of [...this.delivered].sort()) {
      const file = `${folder}/dovecot-uidlist`;
      const text = await fs.readFile(this.abs(file), 'utf8');
      const [header, ...lines] = text.split('\n');
      let next = Number(/ N(\d+)/.exec(header)?.[1] ?? '1');
      const added = bases.map((b) => `${next++} :${b}`);
      const body = [header.replace(/ N\d+/, ` N${next}`), ...lines.filter(Boolean), ...added].join('\n') + '\n';
      const us = this.when();
      const lock = `${file}.lock`;
      await this.writeFile(lock, Buffer.from(body), us);
      await fs.rename(this.abs(lock), this.abs(file));
      this.report.rewritten.push({ path: file, size: Buffer.byteLength(body) });
      this.touchDir(folder, us);
    }
  }

  private async writeQuotas(): Promise<void> {
    for (const [addr, sizes] of [...this.quota].sort()) {
      const line = sizes.map((s) => `${s} 1\n`).join('');
      await this.append(`${addr}/maildirsize`, 0, Buffer.from(line));
    }
  }

  private async append(file: string, n: number, data = this.content.bytes(n)): Promise<void> {
    const fh = await fs.open(this.abs(file), 'a');
    try {
      await fh.write(data);
    } finally {
      await fh.close();
    }
    await setTime(this.abs(file), this.when());
    this.report.appended.push({ path: file, bytes: data.length, size: (await fs.stat(this.abs(file))).size });
  }

  /** A new account: a whole Maildir, as the first login and a few deliveries leave it. */
  private async newAddress(taken: Set<string>): Promise<void> {
    let name: string;
    do {
      name = `${this.rng.str('abcdefghijklmnopqrstuvwxyz', 1)}${this.rng.str('abcdefghijklmnopqrstuvwxyz0123456789', this.rng.int(7, 9))}@${this.domain}`;
    } while (taken.has(name));
    taken.add(name);
    const home = `${this.domainDir}/${name}`;
    const created = this.nowUs - this.rng.int(1, 5) * HOUR_US + this.rng.micros();
    const x: AddressChange = { path: home, entries: [], files: [], bytes: 0 };
    const times = new Map<string, number>();
    const dir = async (p: string): Promise<void> => {
      await fs.mkdir(this.abs(p), { mode: 0o700 });
      await fs.chown(this.abs(p), this.vmail.uid, this.vmail.gid);
      await fs.chmod(this.abs(p), 0o700);
      x.entries.push(p);
      times.set(p, created);
    };
    const file = async (p: string, data: Buffer, us: number): Promise<void> => {
      await this.writeFile(p, data, us);
      x.entries.push(p);
      x.files.push({ path: p, size: data.length });
      x.bytes += data.length;
      const parent = path.posix.dirname(p);
      times.set(parent, Math.max(times.get(parent) ?? 0, us));
    };
    await dir(home);
    for (const sub of ['cur', 'new', 'tmp']) await dir(`${home}/${sub}`);
    const uidValidity = Math.floor(created / 1_000_000);
    const lines: string[] = [];
    let quota = 0;
    const count = this.rng.int(2, 5);
    for (let k = 1; k <= count; k++) {
      const size = this.rng.int(1 * KIB, 16 * KIB);
      const us = created + k * 60_000_000 + this.rng.micros();
      const base = `${Math.floor(us / 1_000_000)}.M${us % 1_000_000}P${this.rng.int(300, 4_194_303)}.${this.host},S=${size},W=${size + Math.ceil(size / 76)}`;
      const inNew = k === count;
      await file(inNew ? `${home}/new/${base}` : `${home}/cur/${base}:2,S`, this.content.bytes(size), us);
      lines.push(`${k} :${base}`);
      quota += size;
    }
    const touched = created + (count + 1) * 60_000_000 + this.rng.micros();
    await file(`${home}/dovecot-uidlist`, Buffer.from(`3 V${uidValidity} N${count + 1} G${this.rng.hex(32)}\n${lines.join('\n')}\n`), touched);
    await file(`${home}/dovecot-uidvalidity`, Buffer.from(uidValidity.toString(16)), created + this.rng.micros());
    await file(`${home}/dovecot-uidvalidity.${uidValidity.toString(16)}`, Buffer.alloc(0), created + this.rng.micros());
    await file(`${home}/dovecot.index.log`, this.content.bytes(this.rng.int(1 * KIB, 8 * KIB)), touched + this.rng.micros());
    await file(`${home}/maildirsize`, Buffer.from(`104857600S\n${quota} ${count}\n`), touched + this.rng.micros());
    const password = `{SHA512-CRYPT}$6$${this.rng.str(CRYPT_ALPHABET, 16)}$${this.rng.str(CRYPT_ALPHABET, 86)}`;
    await file(`${home}/password`, Buffer.from(password), created);
    for (const [d, us] of [...times].sort((p, q) => q[0].length - p[0].length)) await setTime(this.abs(d), us);
    this.touchDir(this.domainDir, created);
    x.entries.sort();
    this.report.newAddresses.push(x);
  }

  private async removeAddress(addr: string): Promise<void> {
    const x: AddressChange = { path: addr, entries: [], files: [], bytes: 0 };
    const inodes = new Set<number>();
    const walk = async (p: string): Promise<void> => {
      const st = await fs.lstat(this.abs(p));
      x.entries.push(p);
      if (st.isDirectory()) {
        for (const n of (await fs.readdir(this.abs(p))).sort()) await walk(`${p}/${n}`);
      } else if (st.isFile()) {
        x.files.push({ path: p, size: st.size });
        if (!inodes.has(st.ino)) x.bytes += st.size;
        inodes.add(st.ino);
      }
    };
    await walk(addr);
    await fs.rm(this.abs(addr), { recursive: true });
    x.entries.sort();
    this.report.removedAddresses.push(x);
    this.touchDir(this.domainDir, this.when());
  }

  private async writeFile(p: string, data: Buffer, us: number): Promise<void> {
    const fh = await fs.open(this.abs(p), 'wx', 0o600);
    try {
      await fh.write(data);
      await fh.chown(this.vmail.uid, this.vmail.gid);
      await fh.chmod(0o600);
    } finally {
      await fh.close();
    }
    await setTime(this.abs(p), us);
  }

  /** A moment in the last six hours. */
  private when(): number {
    return this.nowUs - this.rng.int(1, 6 * 3600 - 1) * 1_000_000 + this.rng.micros();
  }

  private touchDir(dir: string, us: number): void {
    this.dirTimes.set(dir, Math.max(this.dirTimes.get(dir) ?? 0, us));
  }

  private abs(host: string): string {
    return path.join(this.root, host);
  }
}

/** Add one flag to a Maildir flag string, keeping the letters sorted; undefined if none fits. */
function addFlag(flags: string, rng: Rng): string | undefined {
  const free = ADDED_FLAGS.filter((f) => !flags.includes(f));
  if (!free.length) return undefined;
  const f = rng.pick(free);
  return [...flags, f].sort((x, y) => FLAGS.indexOf(x) - FLAGS.indexOf(y)).join('');
}

// ---------------------------------------------------------------------------------------
// The live writer

export interface WriterOptions {
  /** Host path of the mailbox (an address directory, a Maildir INBOX) to write under. */
  mailbox: string;
  /** Default 1. */
  seed?: number;
  /** Pause between steps in ms. Default 2. */
  intervalMs?: number;
  /** Bytes appended to the message being delivered, per step. Default 16 KiB. */
  appendBytes?: number;
  /**
   * A message being delivered (in tmp/) starts at half this size and grows to it, then
   * moves to new/. Default 2 MiB: above the sender's 1 MiB limit for files read whole.
   */
  growTo?: number;
  /** A small message arrives in new/ every this many steps. Default 4. */
  createEvery?: number;
  /** A message is expunged every this many steps. Default 6. */
  deleteEvery?: number;
  /** Messages the writer delivered that it keeps; older ones are expunged first. Default 6. */
  keep?: number;
}

export interface Writer {
  /** Host path of the mailbox it writes under. */
  readonly mailbox: string;
  /** Host paths it created, appended to, moved or deleted so far, sorted. */
  touched(): string[];
  isTouched(hostPath: string): boolean;
  /** Whether `data` is content that `hostPath` had at some moment (false for paths it never touched). */
  wasState(hostPath: string, data: Buffer): boolean;
  counts(): { steps: number; appends: number; creates: number; deletes: number; moves: number };
  /** Stop after the current step; rethrows the writer's own error if it had one. */
  stop(): Promise<void>;
}

interface Tracked {
  /** What the file held before the writer touched it (a pre-existing file). */
  prefix: Buffer;
  /** Keystream id of what the writer wrote into it; -1 when it wrote nothing. */
  id: number;
  sizes: Set<number>;
  size: number;
}

/** Start changing `opts.mailbox` continuously; see the module comment. */
export async function startWriter(root: string, opts: WriterOptions): Promise<Writer> {
  const w = new LiveWriter(path.resolve(root), opts);
  await w.init();
  w.start();
  return w;
}

class LiveWriter implements Writer {
  readonly mailbox: string;
  private readonly rng: Rng;
  private readonly content: Keystream;
  private readonly files = new Map<string, Tracked>();
  private readonly gone = new Set<string>();
  /** Pre-existing messages it may expunge (single-named ones only). */
  private originals: string[] = [];
  /** Messages it delivered, oldest first. */
  private own: string[] = [];
  private growing: { tmp: string; base: string; cipher: Cipher; id: number } | null = null;
  private logCipher: Cipher | null = null;
  private vmail = { uid: 0, gid: 0 };
  private stopping = false;
  private loop: Promise<void> = Promise.resolve();
  private readonly n = { steps: 0, appends: 0, creates: 0, deletes: 0, moves: 0 };
  private readonly interval: number;
  private readonly appendBytes: number;
  private readonly growTo: number;
  private readonly host = 'mail';

  constructor(
    private readonly root: string,
    private readonly o: WriterOptions,
  ) {
    this.mailbox = o.mailbox.replace(/\/$/, '');
    const seed = o.seed ?? 1;
    this.rng = new Rng(seedOf(`relay-writer ${seed}`));
    this.content = new Keystream(`relay-writer ${seed}`);
    this.interval = o.intervalMs ?? 2;
    this.appendBytes = o.appendBytes ?? 16 * KIB;
    this.growTo = o.growTo ?? 2 * MIB;
  }

  async init(): Promise<void> {
    this.vmail = await vmailIds(this.root);
    const cur = `${this.mailbox}/cur`;
    for (const n of (await fs.readdir(this.abs(cur))).sort()) {
      const p = `${cur}/${n}`;
      const st = await fs.lstat(this.abs(p));
      if (st.isFile() && st.nlink === 1) this.originals.push(p);
    }
    const log = `${this.mailbox}/dovecot.index.log`;
    const prefix = await fs.readFile(this.abs(log));
    const id = this.content.nextId();
    this.logCipher = this.content.cipher(id);
    this.files.set(log, { prefix, id, sizes: new Set([prefix.length]), size: prefix.length });
    await this.startGrowing();
  }

  start(): void {
    this.loop = (async () => {
      while (!this.stopping) {
        await this.step();
        await new Promise((r) => setTimeout(r, this.interval));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
  }

  touched(): string[] {
    return [...new Set([...this.files.keys(), ...this.gone])].sort();
  }

  isTouched(p: string): boolean {
    return this.files.has(p) || this.gone.has(p);
  }

  counts(): { steps: number; appends: number; creates: number; deletes: number; moves: number } {
    return { ...this.n };
  }

  wasState(p: string, data: Buffer): boolean {
    const t = this.files.get(p);
    if (!t || !t.sizes.has(data.length)) return false;
    if (data.length < t.prefix.length) return false;
    if (!data.subarray(0, t.prefix.length).equals(t.prefix)) return false;
    const rest = data.length - t.prefix.length;
    return rest === 0 || (t.id >= 0 && data.subarray(t.prefix.length).equals(this.content.bytesOf(t.id, rest)));
  }

  private async step(): Promise<void> {
    const s = ++this.n.steps;
    // The message being delivered grows; once complete it moves to new/.
    const g = this.growing!;
    const t = this.files.get(g.tmp)!;
    await this.appendTo(g.tmp, g.cipher.update(Buffer.alloc(Math.min(this.appendBytes, this.growTo - t.size))));
    if (t.size >= this.growTo) {
      const to = `${this.mailbox}/new/${g.base},S=${t.size},W=${t.size + Math.ceil(t.size / 76)}`;
      await fs.rename(this.abs(g.tmp), this.abs(to));
      this.files.set(to, { prefix: Buffer.alloc(0), id: g.id, sizes: new Set([t.size]), size: t.size });
      this.gone.add(g.tmp);
      this.own.push(to);
      this.n.moves++;
      await this.startGrowing();
    }
    // Dovecot appends to its transaction log on every change.
    const log = `${this.mailbox}/dovecot.index.log`;
    await this.appendTo(log, this.logCipher!.update(Buffer.alloc(this.rng.int(40, 400))));
    if (s % (this.o.createEvery ?? 4) === 0) {
      const size = this.rng.int(1 * KIB, 16 * KIB);
      const p = `${this.mailbox}/new/${this.baseName()},S=${size},W=${size + Math.ceil(size / 76)}`;
      const id = this.content.nextId();
      await this.create(p, this.content.bytesOf(id, size));
      this.files.set(p, { prefix: Buffer.alloc(0), id, sizes: new Set([size]), size });
      this.own.push(p);
      this.n.creates++;
    }
    if (s % (this.o.deleteEvery ?? 6) === 0) {
      const victim = this.own.length > (this.o.keep ?? 6) || !this.originals.length ? this.own.shift() : this.originals.shift();
      if (victim) {
        if (!this.files.has(victim)) {
          // A pre-existing message: remember its content, it was a state of that path.
          const data = await fs.readFile(this.abs(victim));
          this.files.set(victim, { prefix: data, id: -1, sizes: new Set([data.length]), size: data.length });
        }
        await fs.unlink(this.abs(victim));
        this.gone.add(victim);
        this.n.deletes++;
      }
    }
  }

  private async startGrowing(): Promise<void> {
    const base = this.baseName();
    const tmp = `${this.mailbox}/tmp/${base}`;
    const id = this.content.nextId();
    const cipher = this.content.cipher(id);
    const first = cipher.update(Buffer.alloc(Math.floor(this.growTo / 2)));
    await this.create(tmp, first);
    this.files.set(tmp, { prefix: Buffer.alloc(0), id, sizes: new Set([first.length]), size: first.length });
    this.growing = { tmp, base, cipher, id };
  }

  private async create(p: string, data: Buffer): Promise<void> {
    const fh = await fs.open(this.abs(p), 'wx', 0o600);
    try {
      await fh.chown(this.vmail.uid, this.vmail.gid);
      await fh.write(data);
    } finally {
      await fh.close();
    }
  }

  private async appendTo(p: string, data: Buffer): Promise<void> {
    const t = this.files.get(p)!;
    const fh = await fs.open(this.abs(p), 'a');
    try {
      await fh.write(data);
    } finally {
      await fh.close();
    }
    t.size += data.length;
    t.sizes.add(t.size);
    this.n.appends++;
  }

  private baseName(): string {
    const ms = Date.now();
    return `${Math.floor(ms / 1000)}.M${(ms % 1000) * 1000 + this.rng.int(0, 999)}P${this.rng.int(300, 4_194_303)}.${this.host}`;
  }

  private abs(host: string): string {
    return path.join(this.root, host);
  }
}

// ---------------------------------------------------------------------------------------
// Shared helpers

async function vmailIds(root: string): Promise<{ uid: number; gid: number }> {
  const ids = await readIdentity(root);
  const find = (m: Map<number, string>): number | undefined => [...m].find(([, n]) => n === 'vmail')?.[0];
  const uid = find(ids.users);
  const gid = find(ids.groups);
  if (uid === undefined || gid === undefined) throw new Error(`${root}/etc/passwd or etc/group has no vmail`);
  return { uid, gid };
}

/** Set a file's or directory's mtime (and atime) to `us` microseconds exactly. */
async function setTime(abs: string, us: number): Promise<void> {
  // libuv truncates float seconds: aim half a microsecond above (see relay-tree.ts).
  const t = Math.floor(us / 1_000_000) + ((us % 1_000_000) + 0.5) / 1_000_000;
  await fs.utimes(abs, t, t);
}

function seedOf(label: string): number {
  return createHash('sha256').update(label).digest().readUInt32BE(0);
}

/** Seeded incompressible content: an AES-128-CTR keystream per content id. */
class Keystream {
  private readonly key: Buffer;
  private next = 0;
  constructor(label: string) {
    this.key = createHash('sha256').update(label).digest().subarray(0, 16);
  }
  nextId(): number {
    return this.next++;
  }
  cipher(id: number): Cipher {
    const iv = Buffer.alloc(16);
    iv.writeUInt32BE(id >>> 0, 4);
    return createCipheriv('aes-128-ctr', this.key, iv);
  }
  /** The first `n` bytes of content `id`. */
  bytesOf(id: number, n: number): Buffer {
    return this.cipher(id).update(Buffer.alloc(n));
  }
  /** `n` bytes of a fresh content id. */
  bytes(n: number): Buffer {
    return this.bytesOf(this.nextId(), n);
  }
}

