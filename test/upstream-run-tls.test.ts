/**
 * `cmmigrate run --plan F --yes` moves a self-signed relay (a `_` domain) and an external-TLS
 * relay (tls_external_cert_and_key naming certbot's live/ links) end to end against the
 * upstream-shaped stand-in (issue 12), and both hosts then match entry by entry: every
 * carried root, and for external TLS the two files, at their paths, with the same content,
 * owner, mode and mtime (the symlinks carried as the files they lead to).
 */
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ALL_ROOT_PATHS } from './support/harness';
import { EXTERNAL_CERT, EXTERNAL_KEY, setupRehearsal, type Rehearsal } from './support/rehearsal';
import { unitState } from './support/standin-relay';
import { diffSnapshots, snapshotTree } from './support/tree-snapshot';

const TIMEOUT = 240_000;
let r: Rehearsal | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

/** Postfix's runtime files, re-made by every start on either host (proto/roots.ts POSTFIX_RUNTIME). */
const runtime = (p: string): boolean => /^\/var\/spool\/postfix\/(etc|lib)(\/|$)|^\/var\/spool\/postfix\/pid\/./.test(p);

/** Both hosts' carried roots, entry by entry (directory mtimes of the spool and pid/ left out: postfix changes them). */
async function compareHosts(rh: Rehearsal): Promise<string[]> {
  const [a, b] = await Promise.all([snapshotTree(rh.oldRoot, ALL_ROOT_PATHS, { skipSockets: true }), snapshotTree(rh.newRoot, ALL_ROOT_PATHS, { skipSockets: true })]);
  return diffSnapshots(a, b, { ignore: runtime }).filter((d) => !/^\/var\/spool\/postfix(\/pid)?: mtime /.test(d));
}

async function moveEndToEnd(rh: Rehearsal): Promise<{ stderr: string; stdout: string }> {
  const stop = rh.autoSwitchDns(0);
  const run = await rh.run(['run', '--plan', path.relative(rh.dir, rh.plan), '--yes', '--dns-interval', '1'], TIMEOUT);
  stop();
  expect(run.code, run.stderr).toBe(0);
  for (const u of ['postfix', 'dovecot', 'opendkim']) expect(unitState(rh.newHostState, u), u).toBe('active');
  expect(rh.journal().verify.full.state).toBe('done');
  expect(await compareHosts(rh)).toEqual([]);
  return run;
}

describe('cmmigrate run, by TLS mode (issue 12)', () => {
  it(
    'moves a self-signed relay (_mail.example.org): the old pair replaces the one step 2 generated, and the new host presents it',
    async () => {
      r = await setupRehearsal({ tls: 'self' });
      expect(r.mailDomain).toBe('_mail.example.org');
      const run = await moveEndToEnd(r);
      expect(run.stderr).toContain('TLS: self-signed (/etc/ssl/certs/mailserver.pem, /etc/ssl/private/mailserver.key)');
      // Step 2's configure found no certificate on the new host and made one (selfsigned/deployer.py).
      expect(run.stdout + run.stderr).toContain('Generate self-signed TLS certificate if not present');
      for (const p of [r.certPaths.cert, r.certPaths.key]) {
        expect(await fsp.readFile(path.join(r.newRoot, p)), p).toEqual(await fsp.readFile(path.join(r.oldRoot, p)));
      }
      expect(r.services.new.certificateSource(993)).toBe('root');
      expect(r.services.new.certificateSource(143)).toBe('root');
    },
    TIMEOUT,
  );

  it(
    'moves an external-TLS relay: both files at their paths before step 2, content, owner, mode and mtime as on the old host, links carried as files; the dry run and the summary say so',
    async () => {
      r = await setupRehearsal({ tls: 'external' });
      const dry = await r.run(['run', '--plan', path.relative(r.dir, r.plan), '--dry-run']);
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.stdout + dry.stderr).toContain(`carry ${EXTERNAL_CERT} and ${EXTERNAL_KEY} (tls_external_cert_and_key) from the old agent to the new one`);
      expect(fs.existsSync(path.join(r.newRoot, EXTERNAL_KEY))).toBe(false);
      const run = await moveEndToEnd(r);
      expect(run.stderr).toContain(`TLS: external (tls_external_cert_and_key): ${EXTERNAL_CERT} and ${EXTERNAL_KEY}`);
      for (const p of [EXTERNAL_CERT, EXTERNAL_KEY]) {
        const o = fs.statSync(path.join(r.oldRoot, p)); // through the link, as configure's check
        const n = fs.lstatSync(path.join(r.newRoot, p));
        expect(n.isFile(), p).toBe(true);
        expect(await fsp.readFile(path.join(r.newRoot, p)), p).toEqual(await fsp.readFile(path.join(r.oldRoot, p)));
        expect([n.mode & 0o7777, n.uid, n.gid, n.mtimeMs], p).toEqual([o.mode & 0o7777, o.uid, o.gid, o.mtimeMs]);
      }
      expect((fs.statSync(path.join(r.newRoot, 'etc/letsencrypt/live')).mode & 0o7777)).toBe(0o700);
      // Before step 2's cmdeploy, whose configure checks them.
      const events = r.journal();
      expect(events.external_tls.map((e: { path: string; result: string }) => [e.path, e.result])).toEqual([
        [EXTERNAL_CERT, 'written'],
        [EXTERNAL_KEY, 'written'],
      ]);
      expect(Date.parse(events.external_tls[0].at)).toBeLessThan(Date.parse(events.cmdeploy_calls.find((c: { step?: string }) => c.step === '2').started_at));
      expect(run.stderr).toContain(`${EXTERNAL_CERT}: written (`);
      expect(run.stderr).toMatch(/a symlink on the old host, to \/etc\/letsencrypt\/archive\/mail\.example\.org\/fullchain1\.pem: carried as that file/);
      // The summary: what renews them must move too, and which paths were links.
      expect(run.stderr + run.stdout).toMatch(/move whatever renews the external TLS files .*fullchain\.pem and .*privkey\.pem \(certbot, a proxy, a cron job\) to the new host/);
      expect(r.services.new.certificateSource(465)).toBe('root');
    },
    TIMEOUT,
  );
});
