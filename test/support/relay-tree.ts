/**
 * A synthetic chatmail relay, written below a host root as in a chroot: mailboxes (Maildir++
 * with hard-linked multi-recipient messages, non-ASCII and >100-byte folder names, sub-second
 * mtimes), DKIM keys, acmetool state with relative symlinks, the Postfix spool (FIFOs, a unix
 * socket, sticky and setgid directories, queue files) and the small extras.
 *
 * Guarantee: the same seed and options give the same tree, byte for byte: names, contents,
 * modes, owner names and mtimes (to the microsecond). `uidBase` changes only the numeric ids
 * in etc/passwd and etc/group and the ids the files are owned by, never names or contents, so
 * two roots generated with different `uidBase` snapshot as equal (see tree-snapshot.ts).
 * The root must be empty or absent. Needs root privileges (chown), `mkfifo` and `python3`.
 */
import { execFile } from 'node:child_process';
import { createCipheriv, createHash, type Cipher } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { readIdentity } from './tree-snapshot';
import { Rng } from './rng';

export interface RelayTreeOptions {
  /** The host root; everything is written below it. */
  root: string;
  /** Default 1. */
  seed?: number;
  /** Default `mail.example.org`. */
  domain?: string;
  /** Default 20. */
  addresses?: number;
  /** Average messages per address (each address gets 50% to 150% of it). Default 20. */
  messagesPerAddress?: number;
  /** First id of the relay's system users and groups in this root's etc/passwd. Default 5000. */
  uidBase?: number;
  /** Default `/home/vmail/mail`. */
  mailboxesDir?: string;
  /** Sizes of extra big messages, spread over the addresses' INBOX cur/. Default []. */
  bigFiles?: number[];
  /** Epoch ms taken as "now" for every mtime. Default 1_775_000_000_000. */
  now?: number;
  /** Only small messages (200 B to 2 KiB): for trees of very many files. Default false. */
  tinyMessages?: boolean;
}

/** What was written. `files` counts every regular file name (hard links included), `bytes` each inode's data once. */
export interface RelayTreeStats {
  files: number;
  bytes: number;
  dirs: number;
  symlinks: number;
  /** Names beyond the first of a hard-linked file. */
  hardlinks: number;
  fifos: number;
  sockets: number;
  addresses: number;
}

/** The relay's system users, with ids `uidBase + k`. */
export const RELAY_USERS: readonly string[] = ['vmail', 'opendkim', 'postfix', 'iroh'];
/** The relay's system groups, with ids `uidBase + k`. */
export const RELAY_GROUPS: readonly string[] = ['vmail', 'opendkim', 'postfix', 'postdrop', 'iroh'];

const ID_OFFSET: Record<string, number> = { vmail: 0, opendkim: 1, postfix: 2, postdrop: 3, iroh: 4 };

const DAY_US = 86_400_000_000;
const KIB = 1024;
const MIB = 1024 * KIB;
const CHUNK = MIB;
const WRITES_IN_FLIGHT = 32;
/** An address hard-links shared messages into some of the next LINK_WINDOW addresses. */
const LINK_WINDOW = 32;

const COMMON_FOLDERS = ['.Sent', '.Archive', '.DeltaChat', '.Drafts', '.Trash'];
const ODD_FOLDERS = [
  '.Привет',
  '.Größe-Ordner',
  '.📬 Posteingang 🎉',
  '.Archive.2024',
  '.Archive.Ein-sehr-langer-Ordnername-für-alte-Nachrichten-aus-dem-Jahr-2024-die-niemand-mehr-liest-aber-auch-keiner-löscht',
  '.Очень-длинное-имя-папки-для-проверки-заголовков-tar-и-путей',
];
const CUR_FLAGS = [':2,', ':2,S', ':2,S', ':2,S', ':2,RS', ':2,FS'];
const QUEUE_ID_ALPHABET = '0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxy';
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
const CRYPT_ALPHABET = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

const execFileP = promisify(execFile);

/** Write `<root>/etc/passwd` and `<root>/etc/group`: fixed system ids, relay users and groups at `uidBase + k`. */
export async function writeIdentity(root: string, uidBase: number): Promise<void> {
  checkUidBase(uidBase);
  const id = (name: string): number => uidBase + ID_OFFSET[name];
  const nologin = '/usr/sbin/nologin';
  const passwd = [
    'root:x:0:0:root:/root:/bin/bash',
    `daemon:x:1:1:daemon:/usr/sbin:${nologin}`,
    `bin:x:2:2:bin:/bin:${nologin}`,
    `sys:x:3:3:sys:/dev:${nologin}`,
    'sync:x:4:65534:sync:/bin:/bin/sync',
    `www-data:x:33:33:www-data:/var/www:${nologin}`,
    `nobody:x:65534:65534:nobody:/nonexistent:${nologin}`,
    `vmail:x:${id('vmail')}:${id('vmail')}::/home/vmail:/bin/false`,
    `opendkim:x:${id('opendkim')}:${id('opendkim')}::/run/opendkim:${nologin}`,
    `postfix:x:${id('postfix')}:${id('postfix')}::/var/spool/postfix:${nologin}`,
    `iroh:x:${id('iroh')}:${id('iroh')}::/home/iroh:${nologin}`,
  ];
  const group = [
    'root:x:0:',
    'daemon:x:1:',
    'bin:x:2:',
    'sys:x:3:',
    'adm:x:4:',
    'www-data:x:33:',
    'nogroup:x:65534:',
    `vmail:x:${id('vmail')}:`,
    `opendkim:x:${id('opendkim')}:postfix`,
    `postfix:x:${id('postfix')}:`,
    `postdrop:x:${id('postdrop')}:`,
    `iroh:x:${id('iroh')}:`,
  ];
  await fsp.mkdir(path.join(root, 'etc'), { recursive: true });
  for (const [name, lines] of [['passwd', passwd], ['group', group]] as const) {
    const file = path.join(root, 'etc', name);
    await fsp.writeFile(file, lines.join('\n') + '\n', { mode: 0o644 });
    await fsp.chmod(file, 0o644);
  }
}

/** Generate the tree described in the module comment below `opts.root`. */
export async function generateRelayTree(opts: RelayTreeOptions): Promise<RelayTreeStats> {
  const o: Resolved = {
    root: path.resolve(opts.root),
    seed: opts.seed ?? 1,
    domain: opts.domain ?? 'mail.example.org',
    addresses: opts.addresses ?? 20,
    messagesPerAddress: opts.messagesPerAddress ?? 20,
    tinyMessages: opts.tinyMessages ?? false,
    uidBase: opts.uidBase ?? 5000,
    mailboxesDir: opts.mailboxesDir ?? '/home/vmail/mail',
    bigFiles: opts.bigFiles ?? [],
    nowUs: (opts.now ?? 1_775_000_000_000) * 1000,
  };
  checkOptions(o);
  await fsp.mkdir(o.root, { recursive: true });
  const existing = await fsp.readdir(o.root);
  if (existing.length > 0) {
    throw new Error(`${o.root} is not empty (has ${existing.slice(0, 3).join(', ')}): generateRelayTree writes a fresh tree`);
  }
  await writeIdentity(o.root, o.uidBase);
  const ids = await readIdentity(o.root);
  const gen = new Generator(o, invert(ids.users), invert(ids.groups));
  await gen.run();
  return gen.stats;
}

interface Resolved {
  root: string;
  seed: number;
  domain: string;
  addresses: number;
  messagesPerAddress: number;
  tinyMessages: boolean;
  uidBase: number;
  mailboxesDir: string;
  bigFiles: number[];
  nowUs: number;
}

type Owner = readonly [user: string, group: string];
const ROOT: Owner = ['root', 'root'];
const VMAIL: Owner = ['vmail', 'vmail'];
const OPENDKIM: Owner = ['opendkim', 'opendkim'];
const POSTFIX: Owner = ['postfix', 'root'];
const POSTDROP: Owner = ['postfix', 'postdrop'];

/** Seeded random bytes: AES-128-CTR keystream, one counter range per content id. */
interface RandomContent {
  id: number;
  size: number;
}

interface Message {
  base: string;
  name: string;
  sub: 'cur' | 'new';
  us: number;
  size: number;
}

interface Folder {
  /** Host path of the Maildir (the address dir for INBOX). */
  dir: string;
  uidValidity: number;
  messages: Message[];
  bases: Set<string>;
}

interface PendingLink {
  src: string;
  base: string;
  size: number;
  us: number;
  written: Promise<void>;
}

class Generator {
  readonly stats: RelayTreeStats = {
    files: 0,
    bytes: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    fifos: 0,
    sockets: 0,
    addresses: 0,
  };
  /** Host path of each directory made, with the mtime it gets at the end. */
  private readonly dirTimes = new Map<string, number>();
  private readonly pending = new Map<number, PendingLink[]>();
  private readonly pool = new WritePool(WRITES_IN_FLIGHT);
  private readonly key: Buffer;
  private nextContentId = 0;

  constructor(
    private readonly o: Resolved,
    private readonly uids: Map<string, number>,
    private readonly gids: Map<string, number>,
  ) {
    this.key = createHash('sha256').update(`relay-tree content ${o.seed}`).digest().subarray(0, 16);
  }

  async run(): Promise<void> {
    try {
      this.skeleton();
      await this.dkim();
      await this.acme();
      await this.spool();
      await this.extras();
      this.mailboxes();
      for (let i = 0; i < this.o.addresses; i++) await this.address(i);
      await this.pool.drain();
    } catch (err) {
      await this.pool.settle();
      throw err;
    }
    // Bottom-up, after every entry inside is in place.
    const dirs = [...this.dirTimes].sort((a, b) => depth(b[0]) - depth(a[0]) || (a[0] < b[0] ? -1 : 1));
    for (const [dir, us] of dirs) {
      const t = utimeSeconds(us);
      fs.utimesSync(this.abs(dir), t, t);
    }
  }

  private skeleton(): void {
    const r = this.rng('skeleton');
    const installed = this.o.nowUs - r.int(400, 600) * DAY_US + r.micros();
    this.dir('/etc', 0o755, ROOT, installed);
    for (const name of ['/etc/passwd', '/etc/group']) this.fixExisting(name, 0o644, ROOT, installed + r.micros());
    for (const dir of ['/var', '/var/lib', '/var/spool', '/home']) this.dir(dir, 0o755, ROOT, installed);
  }

  private async dkim(): Promise<void> {
    const r = this.rng('dkim');
    const { domain } = this.o;
    const made = this.o.nowUs - r.int(200, 300) * DAY_US + r.micros();
    const dir = '/etc/dkimkeys';
    this.dir(dir, 0o750, OPENDKIM, made);
    const pub = this.randomBytes(this.contentId(), 294).toString('base64');
    const txt =
      `opendkim._domainkey\tIN\tTXT\t( "v=DKIM1; h=sha256; k=rsa; "\n` +
      `\t  "p=${pub.slice(0, 250)}"\n\t  "${pub.slice(250)}" )  ; ----- DKIM key opendkim for ${domain}\n`;
    await this.file(`${dir}/opendkim.private`, this.pem('PRIVATE KEY', 1218), 0o600, OPENDKIM, made);
    await this.file(`${dir}/opendkim.txt`, Buffer.from(txt), 0o644, OPENDKIM, made);
    const keyTable = `opendkim._domainkey.${domain} ${domain}:opendkim:/etc/dkimkeys/opendkim.private\n`;
    await this.file(`${dir}/KeyTable`, Buffer.from(keyTable), 0o644, OPENDKIM, made + r.micros());
    const signingTable = `*@${domain} opendkim._domainkey.${domain}\n`;
    await this.file(`${dir}/SigningTable`, Buffer.from(signingTable), 0o644, OPENDKIM, made + r.micros());
  }

  private async acme(): Promise<void> {
    const r = this.rng('acme');
    const { domain } = this.o;
    const base = '/var/lib/acme';
    const made = this.o.nowUs - r.int(200, 300) * DAY_US + r.micros();
    this.dir(base, 0o755, ROOT, made);

    const account = `${base}/accounts/acme-v02.api.letsencrypt.org%2fdirectory`;
    this.dir(`${base}/accounts`, 0o700, ROOT, made);
    this.dir(account, 0o700, ROOT, made);
    await this.file(`${account}/privkey`, this.pem('EC PRIVATE KEY', 121), 0o600, ROOT, made);

    const keyId = r.str(BASE32, 52);
    this.dir(`${base}/keys`, 0o700, ROOT, made);
    this.dir(`${base}/keys/${keyId}`, 0o700, ROOT, made);
    await this.file(`${base}/keys/${keyId}/privkey`, this.pem('RSA PRIVATE KEY', 1192), 0o600, ROOT, made);

    // An expired certificate and its renewal, which the live/ links point at.
    this.dir(`${base}/certs`, 0o755, ROOT, made);
    const names = [domain, `mta-sts.${domain}`, `www.${domain}`];
    let current = '';
    for (const issued of [made + r.micros(), this.o.nowUs - r.int(20, 50) * DAY_US + r.micros()]) {
      const certId = r.str(BASE32, 52);
      const certDir = `${base}/certs/${certId}`;
      this.dir(certDir, 0o755, ROOT, issued);
      const cert = this.pem('CERTIFICATE', 1290);
      const chain = this.pem('CERTIFICATE', 1296);
      await this.file(`${certDir}/cert`, cert, 0o644, ROOT, issued);
      await this.file(`${certDir}/chain`, chain, 0o644, ROOT, issued);
      await this.file(`${certDir}/fullchain`, Buffer.concat([cert, chain]), 0o644, ROOT, issued);
      const url = `https://acme-v02.api.letsencrypt.org/acme/cert/${r.hex(36)}\n`;
      await this.file(`${certDir}/url`, Buffer.from(url), 0o644, ROOT, issued);
      this.symlink(`${certDir}/privkey`, `../../keys/${keyId}/privkey`, ROOT, issued);
      current = certId;
    }

    this.dir(`${base}/desired`, 0o755, ROOT, made);
    const desired = `satisfy:\n  names:\n${names.map((n) => `  - ${n}\n`).join('')}`;
    await this.file(`${base}/desired/${domain}`, Buffer.from(desired), 0o644, ROOT, made);
    this.dir(`${base}/conf`, 0o755, ROOT, made);
    // What chatmail/relay's configure writes (cmdeploy/src/cmdeploy/acmetool/{target,response-file}.yaml.j2).
    const target =
      'request:\n  provider: https://acme-v02.api.letsencrypt.org/directory\n  key:\n    type: ecdsa\n    ecdsa-curve: nistp256\n' +
      '  challenge:\n    webroot-paths:\n    - /var/www/html/.well-known/acme-challenge\n';
    await this.file(`${base}/conf/target`, Buffer.from(target), 0o644, ROOT, made);
    const responses = '"acme-enter-email": ""\n"acme-agreement:https://letsencrypt.org/documents/LE-SA-v1.8-July-06-2026.pdf": true\n';
    await this.file(`${base}/conf/responses`, Buffer.from(responses), 0o644, ROOT, made);

    const renewed = this.o.nowUs - r.int(1, 19) * DAY_US + r.micros();
    this.dir(`${base}/live`, 0o755, ROOT, made);
    for (const name of names) this.symlink(`${base}/live/${name}`, `../certs/${current}`, ROOT, renewed);
  }

  private async spool(): Promise<void> {
    const r = this.rng('spool');
    const base = '/var/spool/postfix';
    const made = this.o.nowUs - r.int(200, 300) * DAY_US + r.micros();
    const started = this.o.nowUs - r.int(1, 5) * DAY_US + r.micros();
    this.dir(base, 0o755, ROOT, made);
    const queues = ['active', 'bounce', 'corrupt', 'defer', 'deferred', 'flush', 'hold', 'incoming', 'trace', 'saved'];
    for (const q of [...queues, 'private']) this.dir(`${base}/${q}`, 0o700, POSTFIX, made);
    this.dir(`${base}/maildrop`, 0o1730, POSTDROP, made);
    this.dir(`${base}/public`, 0o2710, POSTDROP, made);
    this.dir(`${base}/pid`, 0o755, ROOT, made);
    this.dir(`${base}/opendkim`, 0o750, OPENDKIM, made);

    for (const name of ['pickup', 'qmgr']) await this.fifo(`${base}/public/${name}`, 0o622, POSTDROP, started);
    await this.socket(`${base}/private/smtp`, 0o666, ['postfix', 'postfix'], started);

    const queueId = (): string => `${r.str(QUEUE_ID_ALPHABET, 10)}z${r.str(QUEUE_ID_ALPHABET, r.int(1, 3))}`;
    const recent = (): number => this.o.nowUs - r.int(60, 86_400) * 1_000_000 + r.micros();
    this.dir(`${base}/deferred/A`, 0o700, POSTFIX, made);
    this.dir(`${base}/defer/A`, 0o700, POSTFIX, made);
    for (let k = 0; k < 3; k++) {
      const id = queueId();
      const us = recent();
      await this.file(`${base}/deferred/A/${id}`, this.random(r.int(1 * KIB, 8 * KIB)), 0o700, POSTFIX, us);
      const log = `<${r.str(BASE32, 10)}@example.net>: host mx.example.net[192.0.2.${r.int(1, 254)}] said: 451 4.7.1 Try again later\n`;
      await this.file(`${base}/defer/A/${id}`, Buffer.from(log), 0o600, POSTFIX, us + r.micros());
    }
    for (let k = 0; k < 2; k++) {
      await this.file(`${base}/active/${queueId()}`, this.random(r.int(1 * KIB, 8 * KIB)), 0o700, POSTFIX, recent());
    }
  }

  private async extras(): Promise<void> {
    const r = this.rng('extras');
    await this.file('/etc/chatmail-nocreate', Buffer.alloc(0), 0o644, ROOT, this.o.nowUs - r.int(1, 9) * DAY_US + r.micros());
    const made = this.o.nowUs - r.int(400, 600) * DAY_US + r.micros();
    this.dir('/home/vmail', 0o700, VMAIL, made);
    await this.file('/home/vmail/passdb.sqlite', this.random(r.int(4, 16) * 4 * KIB), 0o600, VMAIL, made + r.int(1, 60) * DAY_US);
  }

  private mailboxes(): void {
    const r = this.rng('mailboxes');
    const made = this.o.nowUs - r.int(400, 600) * DAY_US + r.micros();
    const parts = this.o.mailboxesDir.split('/').filter(Boolean);
    for (let k = 1; k < parts.length; k++) {
      const dir = '/' + parts.slice(0, k).join('/');
      if (!this.dirTimes.has(dir)) this.dir(dir, 0o755, ROOT, made);
    }
    this.dir(this.o.mailboxesDir, 0o700, VMAIL, made);
    this.dir(`${this.o.mailboxesDir}/${this.o.domain}`, 0o700, VMAIL, made);
  }

  private addressNames: string[] | undefined;

  private addressName(i: number): string {
    if (!this.addressNames) {
      const r = this.rng('names');
      const seen = new Set<string>();
      this.addressNames = [];
      while (this.addressNames.length < this.o.addresses) {
        const local = r.str('abcdefghijklmnopqrstuvwxyz', 1) + r.str('abcdefghijklmnopqrstuvwxyz0123456789', r.int(7, 9));
        if (seen.has(local)) continue;
        seen.add(local);
        this.addressNames.push(`${local}@${this.o.domain}`);
      }
    }
    return this.addressNames[i];
  }

  private async address(i: number): Promise<void> {
    const r = this.rng(`address/${i}`);
    const { nowUs } = this.o;
    const home = `${this.o.mailboxesDir}/${this.o.domain}/${this.addressName(i)}`;
    const created = nowUs - r.int(45, 400) * DAY_US + r.int(0, 86_399) * 1_000_000 + r.micros();
    const createdSec = Math.floor(created / 1_000_000);
    this.stats.addresses++;

    this.dir(home, 0o700, VMAIL, created);
    const folderNames = i === 0 ? [...COMMON_FOLDERS, ...ODD_FOLDERS] : this.pickFolders(r);
    const folders: Folder[] = [home, ...folderNames.map((n) => `${home}/${n}`)].map((dir, k) => ({
      dir,
      uidValidity: createdSec + k,
      messages: [],
      bases: new Set<string>(),
    }));
    for (const f of folders) {
      if (f.dir !== home) this.dir(f.dir, 0o700, VMAIL, created + r.micros());
      for (const sub of ['cur', 'new', 'tmp']) this.dir(`${f.dir}/${sub}`, 0o700, VMAIL, created + r.micros());
    }
    const inbox = folders[0];

    // Own messages, delivered over the past 30 days.
    const host = this.o.domain.split('.')[0];
    const count = Math.round(this.o.messagesPerAddress * (0.5 + r.next()));
    const big = this.o.bigFiles.filter((_, k) => k % this.o.addresses === i);
    for (let m = 0; m < count + big.length; m++) {
      const isBig = m >= count;
      const size = isBig
        ? big[m - count]
        : this.o.tinyMessages
          ? r.int(200, 2 * KIB)
          : r.chance(0.05)
            ? r.logUniform(100 * KIB, 4 * MIB)
            : r.int(1 * KIB, 16 * KIB);
      const folder = isBig || folders.length === 1 || r.chance(0.7) ? inbox : folders[r.int(1, folders.length - 1)];
      let base: string;
      let us: number;
      do {
        us = nowUs - r.int(0, 30 * 86_400 - 1) * 1_000_000 + r.micros();
        const sec = Math.floor(us / 1_000_000);
        base = `${sec}.M${us % 1_000_000}P${r.int(300, 4_194_303)}.${host},S=${size},W=${size + Math.ceil(size / 76)}`;
      } while (folder.bases.has(base));
      const sub = !isBig && r.chance(0.15) ? 'new' : 'cur';
      const name = sub === 'new' ? base : base + r.pick(CUR_FLAGS);
      folder.bases.add(base);
      folder.messages.push({ base, name, sub, us, size });
      const rel = `${folder.dir}/${sub}/${name}`;
      const { done: written } = await this.file(rel, { id: this.contentId(), size }, 0o600, VMAIL, us);

      // Multi-recipient delivery: the same file in other addresses' maildirs.
      if (!isBig && r.chance(0.1) && i + 1 < this.o.addresses) {
        const last = Math.min(this.o.addresses - 1, i + LINK_WINDOW);
        const targets = new Set<number>();
        const want = Math.min(r.int(1, 3), last - i);
        while (targets.size < want) targets.add(r.int(i + 1, last));
        for (const j of [...targets].sort((a, b) => a - b)) {
          const list = this.pending.get(j) ?? [];
          list.push({ src: rel, base, size, us, written });
          this.pending.set(j, list);
        }
      }
    }

    for (const link of this.pending.get(i) ?? []) {
      if (inbox.bases.has(link.base)) continue;
      const sub = r.chance(0.2) ? 'new' : 'cur';
      const name = sub === 'new' ? link.base : link.base + r.pick(CUR_FLAGS);
      inbox.bases.add(link.base);
      inbox.messages.push({ base: link.base, name, sub, us: link.us, size: link.size });
      await this.link(`${inbox.dir}/${sub}/${name}`, link.src, link.written, link.us);
    }
    this.pending.delete(i);

    // Dovecot's own files, per folder and for the account.
    for (const f of folders) {
      f.messages.sort((a, b) => a.us - b.us || (a.base < b.base ? -1 : 1));
      const latest = f.messages.length ? f.messages[f.messages.length - 1].us : created;
      const touched = Math.min(nowUs, latest + r.int(1, 600) * 1_000_000 + r.micros());
      let uid = 0;
      const lines = f.messages.map((msg) => {
        uid += r.chance(0.15) ? r.int(2, 4) : 1; // expunged messages leave gaps
        return `${uid} :${msg.base}\n`;
      });
      const header = `3 V${f.uidValidity} N${uid + 1} G${r.hex(32)}\n`;
      await this.file(`${f.dir}/dovecot-uidlist`, Buffer.from(header + lines.join('')), 0o600, VMAIL, touched);
      await this.file(`${f.dir}/dovecot.index.log`, this.random(r.int(1 * KIB, 32 * KIB)), 0o600, VMAIL, touched + r.micros());
      if (f === inbox) {
        await this.file(`${f.dir}/dovecot.index`, this.random(r.int(4 * KIB, 32 * KIB)), 0o600, VMAIL, touched + r.micros());
        await this.file(`${f.dir}/dovecot.index.cache`, this.random(r.int(8 * KIB, 128 * KIB)), 0o600, VMAIL, touched + r.micros());
      } else {
        await this.file(`${f.dir}/maildirfolder`, Buffer.alloc(0), 0o600, VMAIL, created + r.micros());
      }
    }
    const hex = inbox.uidValidity.toString(16);
    await this.file(`${home}/dovecot-uidvalidity`, Buffer.from(hex), 0o600, VMAIL, created + r.micros());
    await this.file(`${home}/dovecot-uidvalidity.${hex}`, Buffer.alloc(0), 0o600, VMAIL, created + r.micros());
    const all = folders.flatMap((f) => f.messages);
    const quota = `104857600S\n${all.reduce((n, msg) => n + msg.size, 0)} ${all.length}\n`;
    await this.file(`${home}/maildirsize`, Buffer.from(quota), 0o600, VMAIL, nowUs - r.int(1, 86_400) * 1_000_000 + r.micros());
    // Its mtime is the last login, which drives the 90-day expiry.
    const password = `{SHA512-CRYPT}$6$${r.str(CRYPT_ALPHABET, 16)}$${r.str(CRYPT_ALPHABET, 86)}`;
    const lastLogin = nowUs - 40 * DAY_US + r.int(0, 86_399) * 1_000_000 + r.micros();
    await this.file(`${home}/password`, Buffer.from(password), 0o600, VMAIL, lastLogin);
    if (r.chance(0.5)) await this.file(`${home}/enforceE2EEincoming`, Buffer.alloc(0), 0o600, VMAIL, created + r.micros());
    if (r.chance(0.5)) {
      const metadata = JSON.stringify({ devicetoken: [r.hex(64)] }) + '\n';
      await this.file(`${home}/metadata.json`, Buffer.from(metadata), 0o600, VMAIL, nowUs - r.int(1, 20) * DAY_US + r.micros());
    }
  }

  private pickFolders(r: Rng): string[] {
    if (!r.chance(0.3)) return [];
    const picked = r.shuffle(COMMON_FOLDERS).slice(0, r.int(1, 3));
    if (r.chance(0.2)) picked.push(r.pick(ODD_FOLDERS));
    return picked;
  }

  // --- entries -------------------------------------------------------------------------

  private dir(host: string, mode: number, owner: Owner, us: number): void {
    const abs = this.abs(host);
    try {
      fs.mkdirSync(abs, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    fs.chownSync(abs, this.uid(owner), this.gid(owner));
    fs.chmodSync(abs, mode); // after chown, and explicit: mkdir drops sticky and setgid bits
    if (!this.dirTimes.has(host)) this.stats.dirs++;
    this.dirTimes.set(host, us);
    this.touchParent(host, us);
  }

  /**
   * Start a file write once a slot is free (so the planner never runs far ahead); `done`
   * settles when the file is complete: content, owner, mode, mtime.
   */
  private file(
    host: string,
    content: Buffer | RandomContent,
    mode: number,
    owner: Owner,
    us: number,
  ): Promise<{ done: Promise<void> }> {
    this.stats.files++;
    this.stats.bytes += Buffer.isBuffer(content) ? content.length : content.size;
    this.touchParent(host, us);
    const abs = this.abs(host);
    const uid = this.uid(owner);
    const gid = this.gid(owner);
    return this.pool.submit(async () => {
      const fh = await fsp.open(abs, 'wx', mode);
      try {
        if (Buffer.isBuffer(content)) await writeAll(fh, content);
        else {
          const cipher = this.cipher(content.id);
          for (let left = content.size; left > 0; left -= CHUNK) {
            await writeAll(fh, cipher.update(ZEROS.subarray(0, Math.min(left, CHUNK))));
          }
        }
        await fh.chown(uid, gid);
        await fh.chmod(mode);
        const t = utimeSeconds(us);
        await fh.utimes(t, t);
      } finally {
        await fh.close();
      }
    });
  }

  /** A hard link to `srcHost`, made once its file is complete. */
  private async link(host: string, srcHost: string, written: Promise<void>, us: number): Promise<void> {
    this.stats.files++;
    this.stats.hardlinks++;
    this.touchParent(host, us);
    await this.pool.submit(async () => {
      await written;
      await fsp.link(this.abs(srcHost), this.abs(host));
    });
  }

  private symlink(host: string, target: string, owner: Owner, us: number): void {
    const abs = this.abs(host);
    fs.symlinkSync(target, abs);
    fs.lchownSync(abs, this.uid(owner), this.gid(owner));
    const t = utimeSeconds(us);
    fs.lutimesSync(abs, t, t);
    this.stats.symlinks++;
    this.touchParent(host, us);
  }

  private async fifo(host: string, mode: number, owner: Owner, us: number): Promise<void> {
    const abs = this.abs(host);
    await execFileP('mkfifo', ['-m', mode.toString(8), abs]);
    this.setMeta(abs, mode, owner, us);
    this.stats.fifos++;
    this.touchParent(host, us);
  }

  /** A unix socket file that stays on disk. Node's net.Server unlinks its socket on close; Python does not. */
  private async socket(host: string, mode: number, owner: Owner, us: number): Promise<void> {
    const abs = this.abs(host);
    const script = 'import os,socket,sys\nos.chdir(sys.argv[1])\nsocket.socket(socket.AF_UNIX).bind(sys.argv[2])';
    // chdir first: a socket path is limited to 107 bytes, a deep test root is not.
    await execFileP('python3', ['-c', script, path.dirname(abs), path.basename(abs)]);
    this.setMeta(abs, mode, owner, us);
    this.stats.sockets++;
    this.touchParent(host, us);
  }

  /** Owner, mode and mtime of an entry made outside the pool (etc/passwd, FIFOs, sockets). */
  private fixExisting(host: string, mode: number, owner: Owner, us: number): void {
    this.setMeta(this.abs(host), mode, owner, us);
    this.stats.files++;
    this.stats.bytes += fs.statSync(this.abs(host)).size;
    this.touchParent(host, us);
  }

  private setMeta(abs: string, mode: number, owner: Owner, us: number): void {
    fs.chownSync(abs, this.uid(owner), this.gid(owner));
    fs.chmodSync(abs, mode);
    const t = utimeSeconds(us);
    fs.utimesSync(abs, t, t);
  }

  /** A directory's mtime is its own creation or the newest entry put into it, whichever is later. */
  private touchParent(host: string, us: number): void {
    const parent = path.posix.dirname(host);
    const current = this.dirTimes.get(parent);
    if (current !== undefined && us > current) this.dirTimes.set(parent, us);
  }

  // --- content and ids -----------------------------------------------------------------

  private contentId(): number {
    return this.nextContentId++;
  }

  private random(size: number): RandomContent {
    return { id: this.contentId(), size };
  }

  private cipher(id: number): Cipher {
    const iv = Buffer.alloc(16);
    iv.writeUInt32BE(Math.floor(id / 2 ** 32), 0);
    iv.writeUInt32BE(id >>> 0, 4); // the low 8 bytes count blocks within the content
    return createCipheriv('aes-128-ctr', this.key, iv);
  }

  private randomBytes(id: number, size: number): Buffer {
    return this.cipher(id).update(Buffer.alloc(size));
  }

  private pem(label: string, bytes: number): Buffer {
    const b64 = this.randomBytes(this.contentId(), bytes).toString('base64');
    const lines = b64.match(/.{1,64}/g) ?? [];
    return Buffer.from(`-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`);
  }

  private rng(label: string): Rng {
    return new Rng(createHash('sha256').update(`relay-tree ${this.o.seed} ${label}`).digest().readUInt32BE(0));
  }

  private abs(host: string): string {
    return path.join(this.o.root, host);
  }

  private uid(owner: Owner): number {
    const id = this.uids.get(owner[0]);
    if (id === undefined) throw new Error(`user ${owner[0]} is not in ${this.o.root}/etc/passwd`);
    return id;
  }

  private gid(owner: Owner): number {
    const id = this.gids.get(owner[1]);
    if (id === undefined) throw new Error(`group ${owner[1]} is not in ${this.o.root}/etc/group`);
    return id;
  }
}


/** Bounded concurrency for file writes, fed by one sequential planner. */
class WritePool {
  private readonly running = new Set<Promise<void>>();
  private failure: { err: unknown } | undefined;

  constructor(private readonly limit: number) {}

  /**
   * Wait until fewer than `limit` tasks run, then start `task`. `done` settles with the task,
   * so a later task can wait for an earlier one (it is already running: no deadlock). Wrapped
   * in an object because an async function's result would otherwise adopt the promise.
   */
  async submit(task: () => Promise<void>): Promise<{ done: Promise<void> }> {
    while (this.running.size >= this.limit) await Promise.race(this.running);
    if (this.failure) throw this.failure.err;
    const done = task();
    const settled: Promise<void> = done.then(
      () => {
        this.running.delete(settled);
      },
      (err: unknown) => {
        this.running.delete(settled);
        this.failure ??= { err };
      },
    );
    this.running.add(settled);
    return { done };
  }

  /** Wait for every task; throw the first failure. */
  async drain(): Promise<void> {
    await this.settle();
    if (this.failure) throw this.failure.err;
  }

  /** Wait for every task, ignoring failures. */
  async settle(): Promise<void> {
    while (this.running.size) await Promise.all([...this.running]);
  }
}

const ZEROS = Buffer.alloc(CHUNK);

async function writeAll(fh: fsp.FileHandle, buf: Buffer): Promise<void> {
  for (let off = 0; off < buf.length; ) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, null);
    off += bytesWritten;
  }
}

/**
 * Float seconds for fs.utimes that land on exactly `us` microseconds: libuv truncates, and
 * a double near 1.7e9 s is only good to about 0.24 µs, so aim half a microsecond above.
 */
function utimeSeconds(us: number): number {
  return Math.floor(us / 1_000_000) + ((us % 1_000_000) + 0.5) / 1_000_000;
}

function depth(host: string): number {
  return host.split('/').length;
}

function invert(byId: Map<number, string>): Map<string, number> {
  const byName = new Map<string, number>();
  for (const [id, name] of byId) if (!byName.has(name)) byName.set(name, id);
  return byName;
}

function checkUidBase(uidBase: number): void {
  if (!Number.isInteger(uidBase) || uidBase < 100 || uidBase + RELAY_GROUPS.length > 60_000) {
    throw new Error(`uidBase must be an integer from 100 to ${60_000 - RELAY_GROUPS.length}, got ${uidBase}`);
  }
}

function checkOptions(o: Resolved): void {
  const count = (name: string, v: number): void => {
    if (!Number.isInteger(v) || v < 0) throw new Error(`${name} must be a non-negative integer, got ${v}`);
  };
  count('seed', o.seed);
  count('addresses', o.addresses);
  count('messagesPerAddress', o.messagesPerAddress);
  o.bigFiles.forEach((size, k) => count(`bigFiles[${k}]`, size));
  checkUidBase(o.uidBase);
  if (!/^[a-z0-9_]([a-z0-9_.-]*[a-z0-9])?$/.test(o.domain)) throw new Error(`domain ${JSON.stringify(o.domain)} is not a host name`);
  const dir = o.mailboxesDir;
  if (!dir.startsWith('/') || dir === '/' || path.posix.normalize(dir) !== dir || dir.endsWith('/')) {
    throw new Error(`mailboxesDir must be a normalized absolute path, got ${JSON.stringify(dir)}`);
  }
  if (o.bigFiles.length > 0 && o.addresses === 0) throw new Error('bigFiles needs at least one address');
  if (!Number.isSafeInteger(o.nowUs)) throw new Error(`now must be epoch milliseconds, got ${o.nowUs / 1000}`);
}
