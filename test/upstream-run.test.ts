/**
 * `cmmigrate run` against a relay as chatmail/relay 1.12.0 deploys it (issue 12): the
 * upstream-shaped stand-in (step 2 creates the mailboxes dir beside step 1, postfix writes its
 * chroot copies and pid files, --disable-mail leaves a oneshot run in progress), a zone that
 * serves the DKIM record, and one fault per point: an expire run during step 3, a DKIM record
 * that no longer matches, a checkout without its venv, external TLS files missing on the old
 * host, an agent on a relay port.
 */
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { dkimRecordValue } from '../controller/relay/dkim';
import { cmmigrate } from './support/harness';
import { setupRehearsal, type Rehearsal } from './support/rehearsal';
import { HOST_TOOLS_DIR, hostToolsEnv } from './support/host-tools';
import { setUnitState, unitState } from './support/standin-relay';

const TIMEOUT = 240_000;
let r: Rehearsal | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

async function hostCalls(hostState: string): Promise<string[]> {
  return (await fsp.readFile(path.join(hostState, 'calls.log'), 'utf8')).split('\n').filter(Boolean);
}

describe('cmmigrate run, upstream-shaped relay (issue 12)', () => {
  it(
    'stops and waits for an expire run in progress at step 3, keeps the new host inert, reloads systemd before step 6 restarts, and checks the DKIM record',
    async () => {
      r = await setupRehearsal();
      const plan = path.relative(r.dir, r.plan);
      // A daily chatmail-expire run in progress: upstream's --disable-mail leaves it running.
      setUnitState(r.oldHostState, 'chatmail-expire', 'activating');
      const stop = r.autoSwitchDns(0);
      const run = await r.run(['run', '--plan', plan, '--yes', '--dns-interval', '1'], TIMEOUT);
      stop();
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain('TLS: ACME');
      expect(run.stderr).toMatch(/DKIM: opendkim\._domainkey\.mail\.example\.org carries the public key of the old host/);
      expect(run.stderr).toMatch(/DKIM: opendkim\._domainkey\.mail\.example\.org carries the public key of the new host/);

      expect(unitState(r.oldHostState, 'chatmail-expire')).toBe('inactive');
      for (const u of ['chatmail-expire.timer', 'acmetool-reconcile.timer', 'filtermail-transport', 'doveauth']) expect(unitState(r.oldHostState, u), u).toBe('inactive');
      const old = await hostCalls(r.oldHostState);
      expect(old.some((l) => l.startsWith('systemctl stop ') && l.includes('chatmail-expire.service'))).toBe(true);

      const calls = await hostCalls(r.newHostState);
      const reload = calls.indexOf('systemctl daemon-reload');
      const restart = calls.findIndex((l) => l.startsWith('systemctl restart '));
      expect(reload).toBeGreaterThanOrEqual(0);
      expect(restart).toBeGreaterThan(reload);
      // After step 2, every unit that writes a carried root was stopped on the new host.
      expect(calls.some((l) => l.startsWith('systemctl stop ') && l.includes('filtermail-transport.service') && l.includes('chatmail-expire.timer'))).toBe(true);
      for (const u of ['turnserver', 'iroh-relay', 'postfix', 'dovecot']) expect(unitState(r.newHostState, u), u).toBe('active');
    },
    TIMEOUT,
  );

  it(
    'warns at preflight and fails after step 6 when the DKIM record does not carry the carried key, naming the record and its value',
    async () => {
      r = await setupRehearsal();
      const plan = path.relative(r.dir, r.plan);
      const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
      await r.setDkim(dkimRecordValue(other));
      // The new host runs Debian 13: preflight warns, naming why.
      await fsp.writeFile(path.join(r.newRoot, 'etc/os-release'), 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n');
      const stop = r.autoSwitchDns(0);
      const run = await r.run(['run', '--plan', plan, '--yes', '--dns-interval', '1'], TIMEOUT);
      stop();
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr).toMatch(/warning:.*opendkim\._domainkey\.mail\.example\.org carries another public key/);
      expect(run.stderr).toContain('step.dns_record_mismatch');
      expect(run.stderr).toMatch(/warning:.*the new host 127\.0\.0\.3 runs Debian GNU\/Linux 13 \(trixie\); chatmail\/relay documents Debian 12 only/);
      const p = /p=([A-Za-z0-9+/=]+)/.exec(r.dkimValue)![1];
      expect(run.stderr.replace(/" "/g, '')).toContain(p);
      // Mail runs on the new host; with the record fixed, step 6 passes.
      expect(unitState(r.newHostState, 'postfix')).toBe('active');
      await r.setDkim(r.dkimValue);
      const again = await r.run(['run', '--plan', plan, '--yes'], TIMEOUT);
      expect(again.code, again.stderr).toBe(0);
    },
    TIMEOUT,
  );

  it(
    'refuses a checkout whose venv was never made, and one with pyinfra 2, before anything changes',
    async () => {
      r = await setupRehearsal({ relay: { venvPyinfra: null } });
      const plan = path.relative(r.dir, r.plan);
      const run = await r.run(['run', '--plan', plan, '--yes']);
      expect(run.code, run.stderr).toBe(3);
      expect(run.stderr).toContain('precondition.relay_venv');
      expect(run.stderr).toContain('scripts/initenv.sh');
      expect(r.calls()).toEqual([]);
      await r.close();
      r = await setupRehearsal({ relay: { venvPyinfra: '2.9.3' } });
      const run2 = await r.run(['run', '--plan', path.relative(r.dir, r.plan), '--yes']);
      expect(run2.code, run2.stderr).toBe(3);
      expect(run2.stderr).toContain('pyinfra 2.9.3');
      expect(r.calls()).toEqual([]);
    },
    TIMEOUT,
  );

  it(
    'names the external TLS mode and refuses when its files are missing on the old host',
    async () => {
      const line = 'tls_external_cert_and_key = /etc/ssl/ext/fullchain.pem /etc/ssl/ext/privkey.pem';
      r = await setupRehearsal({ relay: { iniLines: [line] } });
      // The ini upstream's deploy wrote on the old host (basedeploy.py remote_chatmail_inipath).
      const deployed = path.join(r.oldRoot, 'usr/local/lib/chatmaild/chatmail.ini');
      await fsp.mkdir(path.dirname(deployed), { recursive: true });
      await fsp.writeFile(deployed, `[params]\nmail_domain = mail.example.org\n${line}\n`);
      const plan = path.relative(r.dir, r.plan);
      const run = await r.run(['run', '--plan', plan, '--yes']);
      expect(run.code, run.stderr).toBe(3);
      expect(run.stderr).toContain('TLS: external');
      expect(run.stderr).toContain('precondition.tls_files_missing');
      expect(run.stderr).toContain('/etc/ssl/ext/fullchain.pem and /etc/ssl/ext/privkey.pem');
      expect(r.calls()).toEqual([]);
      // One of them there: the other is named.
      await fsp.mkdir(path.join(r.oldRoot, 'etc/ssl/ext'), { recursive: true });
      await fsp.writeFile(path.join(r.oldRoot, 'etc/ssl/ext/fullchain.pem'), 'cert\n');
      const run2 = await r.run(['run', '--plan', plan, '--yes']);
      expect(run2.code, run2.stderr).toBe(3);
      expect(run2.stderr).toMatch(/no regular file at \/etc\/ssl\/ext\/privkey\.pem\b/);
    },
    TIMEOUT,
  );

  it(
    'checks a CAA record that pins the ACME account with acmetool account-url: another account warns at preflight and fails after step 6 naming the record it must be; the carried one passes',
    async () => {
      r = await setupRehearsal();
      const plan = path.relative(r.dir, r.plan);
      // The URL the stand-in acmetool finds for the old host's account key (as the ACME server would).
      const url = execFileSync(path.join(HOST_TOOLS_DIR, 'acmetool'), [`--state=${path.join(r.oldRoot, 'var/lib/acme')}`, 'account-url'], {
        env: hostToolsEnv(path.join(r.dir, 'scratch')),
        encoding: 'utf8',
      }).trim();
      expect(url).toMatch(/^https:\/\/acme-v02\.api\.letsencrypt\.org\/acme\/acct\/\d+$/);
      const other = 'https://acme-v02.api.letsencrypt.org/acme/acct/1371472956';
      await r.setCaa(`0 issue "letsencrypt.org;accounturi=${other}"`);
      // The new host's acmetool cannot reach the ACME server: the old host's URL stands for the carried key.
      await fsp.mkdir(path.join(r.newHostState, 'fail'), { recursive: true });
      await fsp.writeFile(path.join(r.newHostState, 'fail/acmetool'), '');
      const stop = r.autoSwitchDns(0);
      const run = await r.run(['run', '--plan', plan, '--yes', '--dns-interval', '1'], TIMEOUT);
      stop();
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr).toMatch(new RegExp(`warning:.*the CAA record pins ${other}, not the relay's account ${url}: Let's Encrypt will refuse its renewals \\(acmetool account-url on the old host\\)`));
      expect(run.stderr).toContain('step.dns_record_mismatch');
      expect(run.stderr).toContain(`the record must be: mail.example.org. CAA 0 issue "letsencrypt.org;accounturi=${url}"`);
      expect(run.stderr).toContain("the carried account key is the same on both hosts (step 4's verify)");
      expect(r.journal().acme_account_url).toBe(url);
      expect((await hostCalls(r.newHostState)).some((l) => l.startsWith('acmetool --state=') && l.endsWith(' --batch account-url'))).toBe(true);

      // The record fixed and the new host's acmetool answering: step 6 passes.
      await fsp.rm(path.join(r.newHostState, 'fail/acmetool'));
      await r.setCaa(`0 issue "letsencrypt.org;accounturi=${url}"`);
      const again = await r.run(['run', '--plan', plan, '--yes'], TIMEOUT);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toContain(`CAA: mail.example.org pins the ACME account ${url} of the new host (acmetool account-url on the new host)`);
    },
    TIMEOUT,
  );

  it('init refuses an agent on one of the relay ports, naming the reason', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-relayport-'));
    try {
      const plan = path.join(dir, 'plan.toml');
      const res = await cmmigrate(['init', '--plan', plan, '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3', '--new-agent', '127.0.0.3:443']);
      expect(res.code, res.stderr).toBe(2);
      expect(res.stderr).toContain('usage.bad_option');
      expect(res.stderr).toContain('port 443 belongs to the relay');
      expect(res.stderr).toContain('deployers.py');
      const ok = await cmmigrate(['init', '--plan', plan, '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3', '--new-agent', '127.0.0.3:7826']);
      expect(ok.code, ok.stderr).toBe(0);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
