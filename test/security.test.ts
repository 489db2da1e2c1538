/**
 * Security of the agent pair. A hostile sender (a real gRPC server with an agent certificate
 * of the migration's CA, test/support/crafted-sender.ts) answers the real new agent's List
 * and Fetch calls with crafted listings and tar streams, driven by the real controller CLI.
 * Every refusal must be a clear error that names the problem and the path, change nothing
 * outside the new root, leave no temp file, and not land the entry in question. Peers
 * without the right certificate or role, and requests naming paths outside the allowlist,
 * are sent straight at the real agents with grpc-js clients.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentClient, clientChannelOptions, PROTOCOL_VERSION, type AgentClient, type ListEntry } from '../proto';
import { ensurePki } from '../controller/pki';
import { loadTls, type TlsMaterial } from '../controller/tls-material';
import {
  CRAFTED_MTIME_NS,
  CraftedTar,
  listed,
  listing,
  MAILBOXES,
  mailboxesRoot,
  sha256,
  startCraftedSender,
  type CraftedPass,
  type CraftedSender,
} from './support/crafted-sender';
import { AGENT_STATE_DIRS, findTempFiles, setupMigration, type CliResult, type Migration } from './support/harness';

const SMALL_TREE = { addresses: 2, messagesPerAddress: 3 };
const CLI_TIMEOUT = 20_000;
const TEST_TIMEOUT = 30_000;

async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(
    () => true,
    () => false,
  );
}

/** Every entry below `dir` (leaving out `skip` at the top): type, path, size, mode, owner, links, mtime. */
async function listTree(dir: string, skip: string[] = []): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const name of (await fs.readdir(d)).sort()) {
      if (rel === '' && skip.includes(name)) continue;
      const p = path.join(d, name);
      const st = await fs.lstat(p, { bigint: true });
      const type = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : st.isFile() ? 'f' : 'o';
      out.push(`${type} ${rel}${name} ${st.size} ${(st.mode & 0o7777n).toString(8)} ${st.uid}:${st.gid} ${st.nlink} ${st.mtimeNs}`);
      if (st.isDirectory()) await walk(p, `${rel}${name}/`);
    }
  };
  await walk(dir, '');
  return out;
}

function expectRefused(r: CliResult, code: string, ...mentions: string[]): void {
  const why = `exit ${r.code} ${r.signal ?? ''}\n${r.stderr}`;
  expect(r.signal, why).toBeNull();
  expect(r.code, why).not.toBe(0);
  expect(r.stderr, why).toContain(`[${code}]`);
  for (const m of mentions) expect(r.stderr, why).toContain(m);
}

const mb = (name: string): string => `${MAILBOXES}/${name}`;

/**
 * Preflight: a refused streaming call comes back with its status. grpc-js drops the status
 * of a server call ended with `call.destroy(err)` (it needs `call.emit('error', err)`); then
 * every refusal below would hang until its timeout instead of failing with a clear error.
 */
async function expectRefusalsArrive(m: Migration): Promise<void> {
  const ctl = await loadTls(path.join(m.dir, '.cmmigrate', 'tls', 'controller'), 'controller');
  const c = agentClient(m.oldAddress, grpc.credentials.createSsl(ctl.ca, ctl.key, ctl.cert), clientChannelOptions());
  try {
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      const s = c.List({ phase: 'INITIAL', scope: { mailboxes_dir: '/home/vmail/mail', roots: [] } }, { deadline: Date.now() + 3000 });
      s.on('data', () => undefined);
      s.on('error', resolve);
      s.on('end', () => resolve(null));
    });
    if (err?.code !== grpc.status.PERMISSION_DENIED) {
      throw new Error(
        `List with the controller's certificate must be refused with PERMISSION_DENIED, got ${err ? `${grpc.status[err.code]}: ${err.details}` : 'no error'}; ` +
          'does agent/calls.ts end failed calls with call.destroy(err) instead of call.emit(\'error\', err)?',
      );
    }
  } finally {
    c.close();
  }
}

describe('a hostile sender', { timeout: TEST_TIMEOUT }, () => {
  let m: Migration;
  let sender: CraftedSender;
  let craftedPlan: string;
  let outside: string;

  beforeAll(async () => {
    m = await setupMigration({ tree: SMALL_TREE });
    await expectRefusalsArrive(m);
    // A sentinel next to new/: whatever escaped the root would land around here.
    outside = path.join(m.dir, 'outside');
    await fs.mkdir(outside);
    await fs.writeFile(path.join(outside, 'keep'), 'sentinel\n');
    sender = await startCraftedSender('127.0.0.2', path.join(m.dir, '.cmmigrate', 'tls', 'old'));
    craftedPlan = path.join(m.dir, 'crafted.toml');
    const text = await fs.readFile(m.plan, 'utf8');
    expect(text).toContain(`"${m.oldAddress}"`);
    await fs.writeFile(craftedPlan, text.replace(`"${m.oldAddress}"`, `"${sender.address}"`));
  }, 60_000);
  afterAll(async () => {
    await sender?.stop();
    await m?.close();
  });

  /**
   * Let the real new agent pull `pass` from the crafted sender (`cmmigrate sync --phase
   * initial`), and check what every pass must leave: nothing changed outside the new root,
   * no temp file in it.
   */
  async function pull(pass: CraftedPass): Promise<CliResult> {
    sender.pass = pass;
    const before = await listTree(m.dir, ['new', 'old', '.cmmigrate']);
    const r = await m.cli(['sync', '--plan', craftedPlan, '--phase', 'initial'], CLI_TIMEOUT);
    expect(await listTree(m.dir, ['new', 'old', '.cmmigrate'])).toEqual(before);
    expect(await findTempFiles(m.newRoot)).toEqual([]);
    return r;
  }

  /** A listing of the mailboxes root followed by `entries`. */
  const list = (...entries: ListEntry[]): CraftedPass['list'] => listing([listed(MAILBOXES, 'dir'), ...entries]);
  const file = (name: string, data: Buffer, extra: Partial<ListEntry> = {}): ListEntry => listed(name, 'file', { size: data.length, ...extra });

  it('a well-formed crafted pass is applied (the crafted sender itself works)', async () => {
    const data = Buffer.from('hello\n');
    const r = await pull({
      list: list(listed(mb('ok'), 'dir'), file(mb('ok/f'), data)),
      fetch: await new CraftedTar().file(mb('ok/f'), data).end().bytes(),
      endFetch: 'wants',
    });
    expect(r.code, r.stderr).toBe(0);
    expect(await fs.readFile(path.join(m.newRoot, mb('ok/f')), 'utf8')).toBe('hello\n');
    expect(sender.lists.at(-1)).toMatchObject({ phase: 'INITIAL', scope: { roots: ['mailboxes'] } });
    expect(sender.fetches.at(-1)).toEqual([mb('ok/f')]);
  });

  describe('names from the wire', () => {
    it.each([mb('../../../../outside/x'), mb('../../../outside/x'), mb('./x'), mb('a//x')])('refuses the listed name %s', async (name) => {
      const r = await pull({ list: list(file(name, Buffer.from('pwned\n'))) });
      expectRefused(r, 'wire.bad_path', JSON.stringify(name));
      expect(await exists(path.join(outside, 'x'))).toBe(false);
      expect(await exists(path.join(m.newRoot, 'outside'))).toBe(false);
    });

    it('refuses an absolute listed name', async () => {
      const name = path.join(outside, 'abs');
      const r = await pull({ list: list(file(name, Buffer.from('pwned\n'))) });
      expectRefused(r, 'wire.bad_path', JSON.stringify(name), 'absolute');
      expect(await exists(name)).toBe(false);
      expect(await exists(path.join(m.newRoot, name))).toBe(false);
    });

    it.each(['etc/passwd', 'root/.ssh/authorized_keys', 'home/vmail/mail-other/x', 'home/vmail/passdb.sqlite'])(
      'refuses %s, outside the roots of the pass',
      async (name) => {
        const target = path.join(m.newRoot, name);
        const before = await fs.readFile(target).catch(() => undefined);
        const r = await pull({ list: list(file(name, Buffer.from('root::0:0::/root:/bin/sh\n'))) });
        expectRefused(r, 'agent.path_outside_root', `/${name}`);
        expect(await fs.readFile(target).catch(() => undefined)).toEqual(before);
      },
    );

    it('refuses a root that begins with another path', async () => {
      const r = await pull({ list: listing([listed('etc', 'dir'), listed('etc/passwd', 'file')]) });
      expectRefused(r, 'wire.protocol', '/etc');
    });

    it('refuses a fetched entry named other than the file asked for', async () => {
      const data = Buffer.from('pwned\n');
      const evil = mb('../../../../outside/x');
      const r = await pull({ list: list(file(mb('asked'), data)), fetch: await new CraftedTar().file(evil, data).end().bytes() });
      expectRefused(r, 'wire.protocol', `/${mb('asked')}`, JSON.stringify(evil));
      expect(await exists(path.join(outside, 'x'))).toBe(false);
      expect(await exists(path.join(m.newRoot, mb('asked')))).toBe(false);
    });

    it('refuses a bad name promptly although the sender never ends its listing', async () => {
      const started = Date.now();
      const r = await pull({ list: list(file(mb('../../x'), Buffer.from('x'))).slice(0, 2), stallList: true });
      expectRefused(r, 'wire.bad_path', mb('../../x'));
      expect(Date.now() - started).toBeLessThan(10_000);
    });

    it('refuses a listing out of walk order', async () => {
      const r = await pull({ list: list(listed(mb('b'), 'dir'), listed(mb('a'), 'dir')) });
      expectRefused(r, 'wire.protocol', 'out of order', `/${mb('a')}`);
    });
  });

  describe('symlinks', () => {
    it.each([
      ['an absolute target', (): string => outside],
      ['a relative target', (): string => '../../../../outside'],
    ])('writes nothing through a listed symlink with %s', async (_what, target) => {
      const data = Buffer.from('pwned\n');
      const r = await pull({
        list: list(listed(mb('d'), 'symlink', { link: target() }), file(mb('d/x'), data)),
        fetch: await new CraftedTar().file(mb('d/x'), data).end().bytes(),
      });
      expectRefused(r, 'wire.protocol', `/${mb('d/x')}`, 'without its directory');
      expect(await exists(path.join(outside, 'x'))).toBe(false);
      expect(sender.fetches.at(-1) ?? []).not.toContain(mb('d/x'));
    });

    it('replaces a symlink found on the target by the directory listed there, never follows it', async () => {
      const d = path.join(m.newRoot, mb('planted'));
      await fs.symlink(outside, d);
      const data = Buffer.from('in root\n');
      const r = await pull({
        list: list(listed(mb('planted'), 'dir'), file(mb('planted/x'), data)),
        fetch: await new CraftedTar().file(mb('planted/x'), data).end().bytes(),
      });
      expect(r.code, r.stderr).toBe(0);
      expect((await fs.lstat(d)).isDirectory()).toBe(true);
      expect(await fs.readFile(path.join(d, 'x'), 'utf8')).toBe('in root\n');
      expect(await exists(path.join(outside, 'x'))).toBe(false);
    });

    it('does not list a directory and then a symlink of the same name', async () => {
      const r = await pull({ list: list(listed(mb('e'), 'dir'), listed(mb('e'), 'symlink', { link: outside }), file(mb('e/x'), Buffer.from('x'))) });
      expectRefused(r, 'wire.protocol', `/${mb('e')}`);
      expect(await exists(path.join(outside, 'x'))).toBe(false);
    });

    it('does not turn a directory of the target into a symlink', async () => {
      const dir = path.join(m.newRoot, mb('realdir'));
      await fs.mkdir(dir);
      await fs.writeFile(path.join(dir, 'mine'), 'mine\n');
      const r = await pull({ list: list(listed(mb('realdir'), 'symlink', { link: outside })) });
      expectRefused(r, 'transfer.type_conflict', `/${mb('realdir')}`);
      expect((await fs.lstat(dir)).isDirectory()).toBe(true);
    });
  });

  describe('hard links', () => {
    it.each([
      ['/etc/shadow', 'wire.bad_path'],
      ['../../etc/passwd', 'wire.bad_path'],
      [mb('../../../etc/passwd'), 'wire.bad_path'],
      ['etc/passwd', 'wire.bad_link'],
      [mb('h'), 'wire.bad_link'], // itself
    ])('refuses a hard link to %s', async (leader, code) => {
      const passwd = path.join(m.newRoot, 'etc/passwd');
      const nlink = (await fs.stat(passwd)).nlink;
      const r = await pull({ list: list(listed(mb('h'), 'file', { leader, nlink: 2 })) });
      expectRefused(r, code, leader);
      expect(await exists(path.join(m.newRoot, mb('h')))).toBe(false);
      expect((await fs.stat(passwd)).nlink).toBe(nlink);
    });

    it('refuses a hard link to a file of the target that the listing did not carry', async () => {
      const existing = path.join(m.newRoot, mb('not-listed'));
      await fs.writeFile(existing, 'already here\n');
      const r = await pull({ list: list(listed(mb('h2'), 'file', { leader: mb('not-listed'), nlink: 2 }), listed(mb('not-listed'), 'file', { nlink: 2 })) });
      expectRefused(r, 'wire.bad_link', `/${mb('h2')}`, `/${mb('not-listed')}`);
      expect(await exists(path.join(m.newRoot, mb('h2')))).toBe(false);
      expect((await fs.stat(existing)).nlink).toBe(1);
    });

    it('never hard-links through a symlink left where its leader should be', async () => {
      // The target has a symlink where the leader goes, and the sender skips the leader
      // (as a live pass does for a file that vanished): the link must not reach outside.
      const keep = path.join(outside, 'keep');
      await fs.symlink(keep, path.join(m.newRoot, mb('lead')));
      const r = await pull({
        list: list(file(mb('lead'), Buffer.from('x'), { nlink: 2 }), listed(mb('lead2'), 'file', { leader: mb('lead'), nlink: 2, size: 1 })),
        fetch: await new CraftedTar().control('skipped', { 'CMMIGRATE.skipped': mb('lead') }).end().bytes(),
      });
      expect(r.signal, r.stderr).toBeNull();
      expect((await fs.stat(keep)).nlink).toBe(1);
      const lead2 = await fs.lstat(path.join(m.newRoot, mb('lead2'))).catch(() => null);
      if (lead2?.isFile()) expect(lead2.ino).not.toBe((await fs.stat(keep)).ino);
    });

    it('links to a file listed before it, and to nothing else', async () => {
      const data = Buffer.from('shared\n');
      const r = await pull({
        list: list(file(mb('ln-a'), data, { nlink: 2 }), listed(mb('ln-b'), 'file', { leader: mb('ln-a'), nlink: 2, size: data.length })),
        fetch: await new CraftedTar().file(mb('ln-a'), data).end().bytes(),
      });
      expect(r.code, r.stderr).toBe(0);
      const [a, b] = await Promise.all([fs.stat(path.join(m.newRoot, mb('ln-a'))), fs.stat(path.join(m.newRoot, mb('ln-b')))]);
      expect(b.ino).toBe(a.ino);
      expect(a.nlink).toBe(2);
    });
  });

  describe('device nodes', () => {
    it.each(['character-device', 'block-device', 'device'])('refuses a listed %s', async (type) => {
      const r = await pull({ list: list(listed(mb(type), type)) });
      expectRefused(r, 'wire.device_node', `/${mb(type)}`);
      expect(await exists(path.join(m.newRoot, mb(type)))).toBe(false);
    });

    it.each(['character-device', 'block-device'] as const)('refuses a %s fetched where a file was asked for', async (type) => {
      const name = mb(`fetched-${type}`);
      const r = await pull({
        list: list(file(name, Buffer.alloc(0))),
        fetch: await new CraftedTar().entry({ name, type, mode: 0o666, devmajor: 1, devminor: 3 }).end().bytes(),
      });
      expectRefused(r, 'wire.device_node', `/${name}`);
      expect(await exists(path.join(m.newRoot, name))).toBe(false);
    });
  });

  describe('damaged streams', () => {
    const data = Buffer.from('x'.repeat(50));
    /** A pass that lists one file and answers its fetch with `fetch`. */
    const one = async (name: string, fetch: Buffer | Promise<Buffer>, chunkBytes?: number): Promise<CliResult> =>
      pull({ list: list(file(name, data)), fetch: await fetch, chunkBytes });

    it('a size field that says 100, then 50 bytes and the end of the stream', async () => {
      const name = mb('short-end');
      const bytes = await new CraftedTar().lyingFile(name, data, 100).bytes({ trailer: false });
      const r = await one(name, bytes.subarray(0, bytes.length - 512 + 50));
      expectRefused(r, 'wire.protocol', 'Unexpected end of data');
      expect(await exists(path.join(m.newRoot, name))).toBe(false);
    });

    it('a size field that says 100, then 50 bytes and the next header', async () => {
      const name = mb('short-next');
      const r = await one(name, new CraftedTar().lyingFile(name, data, 100).end().bytes());
      expectRefused(r, 'transfer.digest_mismatch', `/${name}`);
      expect(await exists(path.join(m.newRoot, name))).toBe(false);
    });

    it('a size field that says more than the stream holds swallows the next headers', async () => {
      const name = mb('long');
      const r = await one(name, new CraftedTar().lyingFile(name, data, 3000).file(mb('after'), data).end().bytes());
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/\[(wire\.protocol|transfer\.digest_mismatch)\]/);
      expect(await exists(path.join(m.newRoot, name))).toBe(false);
      expect(await exists(path.join(m.newRoot, mb('after')))).toBe(false);
    });

    it('a size field that says less than what follows', async () => {
      const name = mb('less');
      const r = await one(name, new CraftedTar().lyingFile(name, Buffer.alloc(1500, 'y'), 10).end().bytes());
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/\[(wire\.protocol|transfer\.digest_mismatch)\]/);
      expect(await exists(path.join(m.newRoot, name))).toBe(false);
    });

    it('a stream cut in the middle of a file, in odd slices', async () => {
      const name = mb('cut');
      const big = Buffer.alloc(4000, 'z');
      const bytes = await new CraftedTar().file(name, big).end().bytes();
      const cut = bytes.indexOf(Buffer.alloc(100, 'z')) + 2000;
      const r = await pull({ list: list(file(name, big)), fetch: bytes.subarray(0, cut), chunkBytes: 321 });
      expectRefused(r, 'wire.protocol', 'Unexpected end of data');
      expect(await exists(path.join(m.newRoot, name))).toBe(false);
    });

    it('garbage instead of tar', async () => {
      const name = mb('garbage');
      const garbage = Buffer.alloc(4096);
      for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919 + 13) & 0xff;
      const r = await one(name, garbage);
      expectRefused(r, 'wire.protocol', 'Invalid tar header');
      expect(await exists(path.join(m.newRoot, name))).toBe(false);
    });

    it('an empty answer', async () => {
      const name = mb('nothing');
      const r = await one(name, Buffer.alloc(0));
      expectRefused(r, 'wire.protocol', 'ended early');
      expect(await exists(path.join(m.newRoot, name))).toBe(false);
    });

    it('an empty listing, and one that ends inside its root', async () => {
      expectRefused(await pull({ list: [] }), 'wire.protocol', 'listing was empty');
      expectRefused(await pull({ list: listing([listed(MAILBOXES, 'dir')], { rootEnd: false }) }), 'wire.protocol', 'ended inside root mailboxes');
    });

    it('a listed entry with a bad mtime', async () => {
      expectRefused(await pull({ list: list(listed(mb('t'), 'dir', { mtime_ns: '-1' })) }), 'wire.protocol', `/${mb('t')}`, 'mtime');
    });
  });

  describe('digests', () => {
    it('a wrong digest: the file does not land', async () => {
      const name = mb('forged');
      const data = Buffer.from('real data\n');
      const r = await pull({
        list: list(file(name, data)),
        fetch: await new CraftedTar().file(name, data, { sha256: sha256(Buffer.from('other data\n')) }).end().bytes(),
      });
      expectRefused(r, 'transfer.digest_mismatch', `/${name}`);
      expect(await exists(path.join(m.newRoot, name))).toBe(false);
    });

    it('a wrong digest on a large file, in one big message', async () => {
      // Big enough that the receiver feeds tar-stream under backpressure when it fails.
      const name = mb('forged-big');
      const big = Buffer.alloc(900 * 1024, 'b');
      const r = await pull({
        list: list(file(name, big), file(mb('forged-next'), big)),
        fetch: await new CraftedTar().file(name, big, { sha256: '0'.repeat(64) }).file(mb('forged-next'), big).end().bytes(),
      });
      expectRefused(r, 'transfer.digest_mismatch', `/${name}`);
      expect(await exists(path.join(m.newRoot, name))).toBe(false);
      expect(await exists(path.join(m.newRoot, mb('forged-next')))).toBe(false);
    });

    it('a digest labelled with another path', async () => {
      const name = mb('mislabelled');
      const data = Buffer.from('a\n');
      const fetch = await new CraftedTar().file(name, data).control('end', { 'CMMIGRATE.sha256.path': mb('other') }).bytes();
      const r = await pull({ list: list(file(name, data)), fetch });
      expectRefused(r, 'wire.protocol', `/${name}`, 'digest');
      expect(await exists(path.join(m.newRoot, name))).toBe(false);
    });

    it('a file whose digest never comes', async () => {
      const name = mb('undigested');
      const data = Buffer.from('a\n');
      const r = await pull({ list: list(file(name, data)), fetch: await new CraftedTar().file(name, data).bytes() });
      expectRefused(r, 'wire.protocol', 'ended early');
      expect(await exists(path.join(m.newRoot, name))).toBe(false);
    });

    it('a digest for no file', async () => {
      const r = await pull({ list: list(), fetch: await new CraftedTar().control('end', { 'CMMIGRATE.sha256': '0'.repeat(64), 'CMMIGRATE.sha256.path': mb('x') }).bytes() });
      expectRefused(r, 'wire.protocol', 'digest for no file');
    });
  });

  describe('protocol', () => {
    it.each([
      ['no protocol in the first batch', ''],
      ['another protocol version', String(Number(PROTOCOL_VERSION) + 1)],
    ])('a listing with %s', async (_what, protocol) => {
      const data = Buffer.from('a');
      const r = await pull({ list: listing([listed(MAILBOXES, 'dir'), file(mb('proto'), data)], { protocol }), fetch: await new CraftedTar().file(mb('proto'), data).end().bytes() });
      expectRefused(r, 'wire.protocol_version', `protocol ${JSON.stringify(protocol)}`);
      expect(await exists(path.join(m.newRoot, mb('proto')))).toBe(false);
    });

    it('a listing that offers a root the pass did not ask for', async () => {
      const r = await pull({ list: listing([listed(MAILBOXES, 'dir')], { roots: [mailboxesRoot(), { ...mailboxesRoot(), name: 'dkimkeys', rel: 'etc/dkimkeys' }] }) });
      expectRefused(r, 'wire.protocol', 'roots');
    });

    it('a listing that moves the root', async () => {
      const r = await pull({ list: listing([listed('etc', 'dir')], { roots: [mailboxesRoot({ rel: 'etc' })] }) });
      expectRefused(r, 'agent.path_mailboxes_mismatch', '/etc');
    });

    it('a file answer without its end entry, or with more after it', async () => {
      const data = Buffer.from('a');
      const noEnd = await new CraftedTar().file(mb('tail1'), data).control('digest').bytes();
      expectRefused(await pull({ list: list(file(mb('tail1'), data)), fetch: noEnd }), 'wire.protocol', 'ended early');
      const more = await new CraftedTar().file(mb('tail2'), data).end().file(mb('more'), data).bytes();
      expectRefused(await pull({ list: list(file(mb('tail2'), data)), fetch: more }), 'wire.protocol', 'after the end');
    });
  });

  it('a sender with a certificate of another CA is refused by the receiving agent', async () => {
    const other = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-otherca-'));
    const rogue = await ensurePki(other, 'mail.example.org', { old: ['127.0.0.2'], new: ['127.0.0.3'] }).then(() =>
      startCraftedSender('127.0.0.2', path.join(other, 'old')),
    );
    try {
      const plan = path.join(m.dir, 'rogue.toml');
      await fs.writeFile(plan, (await fs.readFile(craftedPlan, 'utf8')).replace(sender.address, rogue.address));
      rogue.pass = { list: list(file(mb('rogue'), Buffer.from('a'))), fetch: await new CraftedTar().file(mb('rogue'), Buffer.from('a')).end().bytes() };
      const r = await m.cli(['sync', '--plan', plan, '--phase', 'initial'], CLI_TIMEOUT);
      expectRefused(r, 'connect.unavailable', rogue.address);
      expect(rogue.lists).toEqual([]);
      expect(rogue.fetches).toEqual([]);
      expect(await exists(path.join(m.newRoot, mb('rogue')))).toBe(false);
    } finally {
      await rogue.stop();
      await fs.rm(other, { recursive: true, force: true });
    }
  });
});

describe('peers and requests at the real agents', { timeout: TEST_TIMEOUT }, () => {
  let m: Migration;
  let controller: TlsMaterial;
  let agentNew: TlsMaterial;
  let foreign: TlsMaterial;
  let foreignDir: string;
  let secret: string;
  const clients: AgentClient[] = [];

  beforeAll(async () => {
    m = await setupMigration({ tree: SMALL_TREE });
    await expectRefusalsArrive(m);
    const tls = path.join(m.dir, '.cmmigrate', 'tls');
    controller = await loadTls(path.join(tls, 'controller'), 'controller');
    agentNew = await loadTls(path.join(tls, 'new'), 'agent');
    foreignDir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-foreign-'));
    await ensurePki(foreignDir, 'mail.example.org', { old: ['127.0.0.2'], new: ['127.0.0.3'] });
    foreign = await loadTls(path.join(foreignDir, 'controller'), 'controller');
    // Secrets outside the old root, and symlinks to them inside its mailboxes dir.
    secret = 'SECRET-' + 'x'.repeat(40);
    await fs.mkdir(path.join(m.dir, 'secretdir'));
    await fs.writeFile(path.join(m.dir, 'secretdir', 'secret'), secret);
    await fs.symlink(path.join(m.dir, 'secretdir', 'secret'), path.join(m.oldRoot, mb('leak')));
    await fs.symlink(path.join(m.dir, 'secretdir'), path.join(m.oldRoot, mb('leakdir')));
  }, 60_000);
  afterAll(async () => {
    for (const c of clients) c.close();
    await m?.close();
    if (foreignDir) await fs.rm(foreignDir, { recursive: true, force: true });
  });

  /** A client of `address` that trusts the migration's CA and presents `id`, if any. */
  function client(address: string, id?: { key: Buffer; cert: Buffer }): AgentClient {
    const creds = id ? grpc.credentials.createSsl(controller.ca, id.key, id.cert) : grpc.credentials.createSsl(controller.ca);
    const c = agentClient(address, creds, clientChannelOptions());
    clients.push(c);
    return c;
  }

  const deadline = (): grpc.CallOptions => ({ deadline: Date.now() + 5_000 });
  const cmmCode = (err: grpc.ServiceError | null): unknown => err?.metadata?.get('cmm-code')?.[0];
  const scope = (over: { roots?: string[]; mailboxes_dir?: string } = {}) => ({ mailboxes_dir: '/home/vmail/mail', roots: ['mailboxes'], ...over });
  const REFUSED_AT_HANDSHAKE = [grpc.status.UNAVAILABLE, grpc.status.PERMISSION_DENIED, grpc.status.UNAUTHENTICATED];

  function infoError(c: AgentClient): Promise<grpc.ServiceError | null> {
    return new Promise((resolve) => c.Info({}, deadline(), (err) => resolve(err)));
  }

  /** Read a server stream to its end: the messages, and the error that ended it. */
  async function drainStream(s: AsyncIterable<unknown>): Promise<{ messages: unknown[]; err: grpc.ServiceError | null }> {
    const messages: unknown[] = [];
    try {
      for await (const msg of s) messages.push(msg);
      return { messages, err: null };
    } catch (err) {
      return { messages, err: err as grpc.ServiceError };
    }
  }

  /** A Fetch call: the first message, then `paths` as items; the answer's bytes and error. */
  async function fetchCall(c: AgentClient, phase: 'INITIAL' | 'FINAL', sc: ReturnType<typeof scope>, paths: string[]): Promise<{ data: Buffer; err: grpc.ServiceError | null }> {
    const call = c.Fetch(deadline());
    call.write({ phase, scope: sc, items: [] });
    if (paths.length) call.write({ items: paths.map((p) => ({ path: p, size: 0, mtime_ns: CRAFTED_MTIME_NS })) });
    call.end();
    const { messages, err } = await drainStream(call);
    return { data: Buffer.concat(messages.map((msg) => (msg as { data: Buffer }).data)), err };
  }

  it('the controller and agent certificates are accepted where they belong (the clients themselves work)', async () => {
    expect(await infoError(client(m.newAddress, controller))).toBeNull();
    const list = await drainStream(client(m.oldAddress, agentNew).List({ phase: 'INITIAL', scope: scope() }, deadline()));
    expect(list.err).toBeNull();
    expect(list.messages.length).toBeGreaterThan(1);
  });

  it('refuses a client without a certificate', async () => {
    const err = await infoError(client(m.newAddress));
    expect(REFUSED_AT_HANDSHAKE).toContain(err?.code);
    const list = await drainStream(client(m.oldAddress).List({ phase: 'INITIAL', scope: scope() }, deadline()));
    expect(list.messages).toEqual([]);
    expect(REFUSED_AT_HANDSHAKE).toContain(list.err?.code);
  });

  it('refuses a client with a certificate of another CA', async () => {
    for (const address of [m.newAddress, m.oldAddress]) {
      expect(REFUSED_AT_HANDSHAKE).toContain((await infoError(client(address, foreign)))?.code);
    }
    for (const call of [() => client(m.oldAddress, foreign).List({ phase: 'INITIAL', scope: scope() }, deadline())]) {
      const { messages, err } = await drainStream(call());
      expect(messages).toEqual([]);
      expect(REFUSED_AT_HANDSHAKE).toContain(err?.code);
    }
  });

  it('refuses List and Fetch from the controller certificate: they need an agent', async () => {
    const c = client(m.oldAddress, controller);
    for (const call of [() => c.List({ phase: 'INITIAL', scope: scope() }, deadline())]) {
      const { messages, err } = await drainStream(call());
      expect(messages).toEqual([]);
      expect(err?.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(cmmCode(err)).toBe('auth.wrong_role');
    }
    const fetched = await fetchCall(c, 'INITIAL', scope(), [mb('leak')]);
    expect(fetched.data.length).toBe(0);
    expect(fetched.err?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(cmmCode(fetched.err)).toBe('auth.wrong_role');
  });

  it('refuses Info, Pull and Verify from an agent certificate: they need the controller', async () => {
    const c = client(m.newAddress, agentNew);
    const info = await infoError(c);
    expect(info?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(cmmCode(info)).toBe('auth.wrong_role');
    const before = await listTree(m.newRoot);
    for (const call of [
      () => c.Pull({ source: m.oldAddress, phase: 'INITIAL', scope: scope(), owners: [], max_delete: -1 }, deadline()),
      () => c.Verify({ scope: scope(), owners: [] }, deadline()),
    ]) {
      const { messages, err } = await drainStream(call());
      expect(messages).toEqual([]);
      expect(err?.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(cmmCode(err)).toBe('auth.wrong_role');
    }
    expect(await listTree(m.newRoot)).toEqual(before);
  });

  it.each([
    [{ roots: ['../etc'] }, 'agent.path_outside_root'],
    [{ roots: ['shadow'] }, 'agent.path_outside_root'],
    [{ roots: ['mailboxes', '/etc'] }, 'agent.path_outside_root'],
    [{ mailboxes_dir: '/etc' }, 'agent.path_mailboxes_mismatch'],
    [{ mailboxes_dir: '/home/vmail/mail/../../../etc' }, 'agent.path_mailboxes_mismatch'],
  ])('refuses List, Fetch, Verify and Pull with the scope %j, with no data', async (over, code) => {
    const sc = scope(over);
    const agent = client(m.oldAddress, agentNew);
    const ctl = client(m.oldAddress, controller);
    for (const call of [
      () => agent.List({ phase: 'FINAL', scope: sc }, deadline()),
      () => ctl.Verify({ scope: sc, owners: [] }, deadline()),
    ]) {
      const { messages, err } = await drainStream(call());
      expect(messages).toEqual([]);
      expect(err?.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(cmmCode(err)).toBe(code);
    }
    const fetched = await fetchCall(agent, 'FINAL', sc, ['etc/dkimkeys/opendkim.private']);
    expect(fetched.data.length).toBe(0);
    expect(fetched.err?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(cmmCode(fetched.err)).toBe(code);
    const before = await listTree(m.newRoot);
    const pull = await drainStream(
      client(m.newAddress, controller).Pull({ source: m.oldAddress, phase: 'FINAL', scope: sc, owners: [], max_delete: -1 }, deadline()),
    );
    expect(pull.messages).toEqual([]);
    expect(pull.err?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(cmmCode(pull.err)).toBe(code);
    expect(await listTree(m.newRoot)).toEqual(before);
  });

  describe('a hostile receiver asks the real old agent for files', () => {
    it.each([
      ['/etc/passwd', grpc.status.DATA_LOSS, 'wire.bad_path'],
      [mb('../../../../secretdir/secret'), grpc.status.DATA_LOSS, 'wire.bad_path'],
      ['etc/passwd', grpc.status.PERMISSION_DENIED, 'agent.path_outside_root'],
      ['etc/dkimkeys/opendkim.private', grpc.status.PERMISSION_DENIED, 'agent.path_outside_root'], // not a root of this (initial) pass
      [mb('leakdir/secret'), grpc.status.PERMISSION_DENIED, 'agent.path_outside_root'], // through a symlinked directory
    ])('refuses %s', async (want, status, code) => {
      const { data, err } = await fetchCall(client(m.oldAddress, agentNew), 'INITIAL', scope(), [want]);
      expect(err?.code).toBe(status);
      expect(cmmCode(err)).toBe(code);
      expect(data.includes(secret)).toBe(false);
      expect(data.includes('root:x:0:0')).toBe(false);
    });

    it('never reads through a symlink: a live pass skips it, the final pass fails', async () => {
      const live = await fetchCall(client(m.oldAddress, agentNew), 'INITIAL', scope(), [mb('leak')]);
      expect(live.err).toBeNull();
      expect(live.data.includes('CMMIGRATE.skipped')).toBe(true);
      expect(live.data.includes(secret)).toBe(false);
      const strict = await fetchCall(client(m.oldAddress, agentNew), 'FINAL', scope(), [mb('leak')]);
      expect(strict.err?.code).toBe(grpc.status.DATA_LOSS);
      expect(cmmCode(strict.err)).toBe('transfer.source_changed');
      expect(strict.data.includes(secret)).toBe(false);
    });
  });
});

describe('owner names missing on the new host', { timeout: TEST_TIMEOUT }, () => {
  let m: Migration;
  beforeAll(async () => {
    m = await setupMigration({ tree: SMALL_TREE, newUsers: false });
    await expectRefusalsArrive(m);
  }, 60_000);
  afterAll(async () => {
    await m?.close();
  });

  it('the final phase stops before writing anything and names the users and groups', async () => {
    // The agent's sync cookies come and go in its own state dir (the change journal).
    const relayTree = async (): Promise<string[]> => (await listTree(m.newRoot)).filter((l) => !AGENT_STATE_DIRS.includes(l.split(' ')[1]));
    const before = await relayTree();
    const r = await m.cli(['sync', '--plan', m.plan, '--phase', 'final'], CLI_TIMEOUT);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.stderr).toContain('[transfer.missing_owners]');
    expect(r.stderr).toMatch(/users [^\n]*opendkim[^\n]*postfix[^\n]*vmail/);
    expect(r.stderr).toMatch(/groups [^\n]*opendkim[^\n]*postdrop[^\n]*vmail/);
    expect(r.code, r.stderr).toBe(3);
    expect(await relayTree()).toEqual(before);
  });

  it('the initial phase goes ahead and writes the mailboxes as root', async () => {
    const r = await m.cli(['sync', '--plan', m.plan, '--phase', 'initial', '--json'], CLI_TIMEOUT);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.owners_defaulted).toEqual(['vmail']);
    expect(summary.files).toBeGreaterThan(0);
    const entries = await listTree(path.join(m.newRoot, MAILBOXES));
    expect(entries.length).toBeGreaterThan(summary.files);
    for (const e of entries) expect(e.split(' ').at(-3), e).toBe('0:0');
    expect(await findTempFiles(m.newRoot)).toEqual([]);
  });
});
