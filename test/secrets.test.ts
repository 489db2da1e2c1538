/**
 * Secrets on the new host and in the logs (issue 7).
 *
 * Modes: while passes run, a tight loop walks the new root and records the mode of every
 * file it sees, temp files included. No file, at any moment, may have group or other
 * permission bits that no file of the same directory has on the old host: the DKIM key,
 * the ACME and TLS keys, the password files and every message are never readable by others,
 * not even as a temp file.
 *
 * Logs: the old tree holds recognisable markers in the DKIM, ACME and TLS keys, the password
 * hashes, passdb.sqlite and a message; the agents log at trace level; the controller runs
 * with --json. No agent log line, controller output or error message may contain a marker.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectIntact, reportFigure } from './support/fault-checks';
import { setupMigration, TMP_PREFIX, type CliResult, type Migration } from './support/harness';
import { relayActivity } from './support/relay-activity';

const MIB = 1024 * 1024;
const MARK = {
  dkim: 'MARKERDKIMKEY7f3a9c',
  acme: 'MARKERACMEKEY51b2e0',
  tls: 'MARKERTLSKEY0c9d4a',
  hash: 'MARKERHASHe8d1f2aa',
  passdb: 'MARKERPASSDB33a0c1',
  mail: 'MARKERMAILBODY9b7e6',
};

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const n of await fs.readdir(d).catch(() => [] as string[])) {
      const p = path.join(d, n);
      const st = await fs.lstat(p).catch(() => null);
      if (st?.isDirectory()) await walk(p);
      else if (st?.isFile()) out.push(p);
    }
  };
  await walk(dir);
  return out;
}

/** Put `marker` into an existing file, keeping its size class, owner and mode. */
async function plant(file: string, text: string): Promise<void> {
  const st = await fs.stat(file);
  await fs.writeFile(file, text);
  await fs.chmod(file, st.mode & 0o7777);
  await fs.chown(file, st.uid, st.gid);
}

describe('secrets', () => {
  let m: Migration;
  const outputs: { what: string; text: string }[] = [];
  const record = (what: string, r: CliResult): CliResult => {
    outputs.push({ what: `${what} stdout`, text: r.stdout }, { what: `${what} stderr`, text: r.stderr });
    return r;
  };

  beforeAll(async () => {
    m = await setupMigration({
      tree: { addresses: 6, messagesPerAddress: 10, bigFiles: [12 * MIB, 12 * MIB, 12 * MIB] },
      agentArgs: ['--log-level', 'trace'],
      prepare: async (root) => {
        const pem = (kind: string, mark: string): string => `-----BEGIN ${kind}-----\n${mark}${'A'.repeat(64 - mark.length)}\n${'B'.repeat(64)}\n-----END ${kind}-----\n`;
        await plant(path.join(root, 'etc/dkimkeys/opendkim.private'), pem('PRIVATE KEY', MARK.dkim));
        for (const f of await files(path.join(root, 'var/lib/acme'))) if (path.basename(f) === 'privkey') await plant(f, pem('EC PRIVATE KEY', MARK.acme));
        await plant(path.join(root, 'home/vmail/passdb.sqlite'), `SQLite format 3\0${MARK.passdb}`);
        const mail = await files(path.join(root, 'home/vmail/mail'));
        for (const f of mail.filter((f) => path.basename(f) === 'password')) await plant(f, `{SHA512-CRYPT}$6$${MARK.hash}$${'x'.repeat(86)}`);
        const msg = mail.find((f) => /\/cur\/[^/]*,S=\d{3,5},/.test(f))!;
        await plant(msg, `From: a@mail.example.org\r\nSubject: hello\r\n\r\n${MARK.mail}\r\n`);
        for (const [p, mode, text] of [
          ['etc/ssl/private/mailserver.key', 0o600, pem('PRIVATE KEY', MARK.tls)],
          ['etc/ssl/certs/mailserver.pem', 0o644, pem('CERTIFICATE', 'PUBLICCERT')],
        ] as const) {
          await fs.mkdir(path.dirname(path.join(root, p)), { recursive: true });
          await fs.writeFile(path.join(root, p), text, { mode });
        }
      },
    });
  }, 60_000);
  afterAll(async () => {
    await m?.close();
  });

  it('no file on the new host is ever more readable than its directory\'s files on the old host, temp files included', async () => {
    // Per directory of the old host: the group/other bits that some file there has.
    const allowed = new Map<string, number>();
    for (const f of await files(m.oldRoot)) {
      const rel = path.relative(m.oldRoot, path.dirname(f));
      allowed.set(rel, (allowed.get(rel) ?? 0) | ((await fs.lstat(f)).mode & 0o077));
    }
    const seen = { observations: 0, temps: 0, walks: 0 };
    const bad = new Set<string>();
    let running = true;
    const watch = (async () => {
      while (running) {
        seen.walks++;
        for (const f of await files(m.newRoot)) {
          const st = await fs.lstat(f).catch(() => null);
          if (!st) continue;
          seen.observations++;
          const rel = path.relative(m.newRoot, f);
          if (path.basename(f).startsWith(TMP_PREFIX)) seen.temps++;
          const extra = st.mode & 0o077 & ~(allowed.get(path.dirname(rel)) ?? 0o077);
          if (extra) bad.add(`${rel} ${(st.mode & 0o7777).toString(8)}`);
        }
      }
    })();
    try {
      expect(record('initial', await m.cli(['sync', '--plan', m.plan, '--phase', 'initial', '--json'])).code).toBe(0);
      await relayActivity({ root: m.oldRoot, seed: 3 });
      expect(record('final', await m.cli(['sync', '--plan', m.plan, '--phase', 'final', '--json'])).code).toBe(0);
    } finally {
      running = false;
      await watch;
    }
    expect([...bad]).toEqual([]);
    expect(seen.temps, 'the watcher never saw a temp file: it checked nothing that matters').toBeGreaterThan(0);
    // The keys did arrive, with their modes.
    for (const [p, mode] of [
      ['etc/dkimkeys/opendkim.private', 0o600],
      ['etc/ssl/private/mailserver.key', 0o600],
      ['home/vmail/passdb.sqlite', 0o600],
    ] as const) expect(((await fs.stat(path.join(m.newRoot, p))).mode & 0o7777).toString(8), p).toBe(mode.toString(8));
    await expectIntact(m);
    reportFigure('modes', seen);
  }, 90_000);

  it('no log line, --json output or error message holds file contents, hashes or keys', async () => {
    record('verify', await m.cli(['verify', '--plan', m.plan, '--json']));
    record('agents', await m.cli(['agents', '--plan', m.plan, '--json']));
    await relayActivity({ root: m.oldRoot, seed: 4 });
    record('dry-run', await m.cli(['sync', '--plan', m.plan, '--phase', 'final', '--dry-run', '--json']));
    record('final', await m.cli(['sync', '--plan', m.plan, '--phase', 'final', '--json']));
    // An error on the way: a verify that finds a difference in a key file.
    const key = path.join(m.newRoot, 'etc/dkimkeys/opendkim.private');
    const saved = await fs.readFile(key);
    await fs.writeFile(key, saved.toString().replace(MARK.dkim, MARK.dkim.toLowerCase()));
    const v = record('verify differing', await m.cli(['verify', '--plan', m.plan, '--json']));
    expect(v.code).not.toBe(0);
    await fs.writeFile(key, saved);
    // And a pass that fails: the old agent is gone.
    const logs = [m.old.log(), m.new.log()];
    await m.old.stop('SIGKILL');
    const down = record('old agent down', await m.cli(['sync', '--plan', m.plan, '--phase', 'final', '--json'], 30_000));
    expect(down.code).not.toBe(0);
    await m.restart('old');
    outputs.push({ what: 'old agent log', text: logs[0] }, { what: 'new agent log', text: m.new.log() });
    expect(logs[1].length).toBeGreaterThan(1000);
    const leaks: string[] = [];
    for (const o of outputs) {
      for (const [k, marker] of Object.entries(MARK)) {
        for (const variant of [marker, marker.toLowerCase(), Buffer.from(marker).toString('base64').slice(0, 16), Buffer.from(marker).toString('hex')]) {
          if (o.text.includes(variant)) leaks.push(`${o.what}: ${k}`);
        }
      }
      if (/\$6\$/.test(o.text)) leaks.push(`${o.what}: a SHA512-CRYPT hash`);
      if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(o.text)) leaks.push(`${o.what}: a PEM private key`);
    }
    expect(leaks).toEqual([]);
    // The markers are really in what the agents moved (so the grep above could fail).
    expect((await fs.readFile(path.join(m.newRoot, 'etc/ssl/private/mailserver.key'), 'utf8'))).toContain(MARK.tls);
    expect(await fs.readFile(path.join(m.newRoot, 'home/vmail/passdb.sqlite'), 'utf8')).toContain(MARK.passdb);
    const bytes = outputs.reduce((n, o) => n + o.text.length, 0);
    reportFigure('log-grep', { outputs: outputs.length, bytes, markers: Object.keys(MARK).length, leaks: leaks.length });
  }, 90_000);
});
