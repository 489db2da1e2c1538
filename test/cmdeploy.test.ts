import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CmError } from '../proto/errors';
import { parseIni, readChatmailIni } from '../controller/relay/chatmail-ini';
import { cmdeployCommand, runCmdeploy, type RunCmdeployOptions } from '../controller/relay/cmdeploy';
import { chatmailVersionWarning, checkoutCommit } from '../controller/relay/git-head';
import { detectStageSupport, requireStageSupport } from '../controller/relay/stages';
import { cmdeployCalls, expectCmdeployCall, makeRelayCheckout } from './support/relay-checkout';

let tmp: string;
let relay: string;
beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-cmdeploy-'));
  relay = await makeRelayCheckout(path.join(tmp, 'relay'), { stages: 'basedeploy', release: '1.8.0' });
});
afterEach(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<CmError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CmError);
  return err as CmError;
}

/** Runs cmdeploy with a recorder for the echo and the output lines. */
async function run(opts: Omit<RunCmdeployOptions, 'relayDir'>, relayDir = relay) {
  const echoed: string[] = [];
  const lines: Array<[string, string]> = [];
  const result = runCmdeploy({ relayDir, echo: (l) => echoed.push(l), onLine: (l, s) => lines.push([s, l]), ...opts });
  return { result, echoed, lines };
}

describe('runCmdeploy', () => {
  it('step 2: CMDEPLOY_STAGES=install,configure, the checkout as working directory, the exact argv', async () => {
    await expectCmdeployCall(relay, { argv: ['run', '--ssh-host', '127.0.0.3'], stages: 'install,configure' });
    const r = await run({ sshHost: '127.0.0.3', action: 'preconfigure', side: 'new' });
    const res = await r.result;
    expect(res).toMatchObject({ ran: true, exitCode: 0 });
    expect(r.echoed).toEqual(['[$ CMDEPLOY_STAGES=install,configure scripts/cmdeploy run --ssh-host 127.0.0.3]']);
    expect(await cmdeployCalls(relay)).toEqual([
      { argv: ['run', '--ssh-host', '127.0.0.3'], cwd: relay, stages: 'install,configure', verdict: 'ok', exit: 0 },
    ]);
    // Streamed line by line from both streams (their relative order is the OS's), the last line flushed without its newline.
    const byStream = (s: string): string[] => r.lines.filter(([k]) => k === s).map(([, l]) => l);
    expect(byStream('stdout')).toEqual(['[ssh] login to 127.0.0.3', '--> install on 127.0.0.3', '--> configure on 127.0.0.3', 'last line without a newline']);
    expect(byStream('stderr')).toEqual(['Deploy completed, call `cmdeploy dns` next.']);
  });

  it('step 3: --disable-mail with CMDEPLOY_STAGES removed, even when the caller had it set', async () => {
    await expectCmdeployCall(relay, { argv: ['run', '--ssh-host', '127.0.0.2', '--disable-mail'], stages: null });
    const r = await run({ sshHost: '127.0.0.2', action: 'disable-mail', side: 'old', env: { ...process.env, CMDEPLOY_STAGES: 'activate' } });
    await r.result;
    expect(r.echoed).toEqual(['[$ scripts/cmdeploy run --ssh-host 127.0.0.2 --disable-mail]']);
    expect(await cmdeployCalls(relay)).toEqual([
      { argv: ['run', '--ssh-host', '127.0.0.2', '--disable-mail'], cwd: relay, stages: null, verdict: 'ok', exit: 0 },
    ]);
    expect(r.lines.map(([, l]) => l)).toContain('    [127.0.0.2] Stop and disable postfix.service, dovecot.service');
  });

  it('step 6: CMDEPLOY_STAGES=activate, from a relative checkout path and another working directory', async () => {
    await expectCmdeployCall(relay, { argv: ['run', '--ssh-host', 'relay-new.example.org'], stages: 'activate' });
    const r = await run({ sshHost: 'relay-new.example.org', action: 'activate' }, path.relative(process.cwd(), relay));
    await r.result;
    expect(r.echoed).toEqual(['[$ CMDEPLOY_STAGES=activate scripts/cmdeploy run --ssh-host relay-new.example.org]']);
    expect((await cmdeployCalls(relay))[0]).toMatchObject({ cwd: relay, stages: 'activate', verdict: 'ok' });
  });

  it('exit 1 is step.cmdeploy_failed naming the host, the stage and the exit code, with a hint', async () => {
    await expectCmdeployCall(relay, { argv: ['run', '--ssh-host', '127.0.0.3'], stages: 'install,configure', exit: 1 });
    const r = await run({ sshHost: '127.0.0.3', action: 'preconfigure', side: 'new' });
    const err = await failure(r.result);
    expect(err.code).toBe('step.cmdeploy_failed');
    expect(err.exitCode).toBe(1);
    expect(err.message).toBe('cmdeploy with CMDEPLOY_STAGES=install,configure for the new host 127.0.0.3 failed with exit code 1');
    expect(err.hint).toMatch(/fix what it reports.*run the same command again/);
    expect(err.details).toMatchObject({ host: '127.0.0.3', side: 'new', stages: 'install,configure', exit_code: 1 });
    expect(err.details?.output_tail).toContain('Deploy failed');
    expect((await cmdeployCalls(relay))[0]).toMatchObject({ verdict: 'ok', exit: 1 });
  });

  it('a failed --disable-mail warns that mail may still run on the old host', async () => {
    await expectCmdeployCall(relay, { argv: ['run', '--ssh-host', '127.0.0.2', '--disable-mail'], stages: null, exit: 1 });
    const err = await failure((await run({ sshHost: '127.0.0.2', action: 'disable-mail', side: 'old', rerun: 'cmmigrate run --plan plan.toml' })).result);
    expect(err.message).toBe('cmdeploy --disable-mail (a full deploy, CMDEPLOY_STAGES unset) for the old host 127.0.0.2 failed with exit code 1');
    expect(err.hint).toContain('mail may still run on the old host 127.0.0.2');
    expect(err.hint).toContain('run cmmigrate run --plan plan.toml again');
  });

  it('the stand-in refuses a call other than the announced one, and that fails the run', async () => {
    await expectCmdeployCall(relay, { argv: ['run', '--ssh-host', '127.0.0.3'], stages: 'activate' });
    const err = await failure((await run({ sshHost: '127.0.0.3', action: 'preconfigure' })).result);
    expect(err.code).toBe('step.cmdeploy_failed');
    expect((await cmdeployCalls(relay))[0].verdict).toBe('unexpected: CMDEPLOY_STAGES "install,configure", expected "activate"');
    // Nothing announced: any call is wrong.
    await failure((await run({ sshHost: '127.0.0.3', action: 'activate' })).result);
    expect((await cmdeployCalls(relay))[1].verdict).toBe('unexpected: no call was expected');
  });

  it('a dry run checks the checkout and returns the command without running it', async () => {
    const r = await run({ sshHost: '2001:db8::3', action: 'activate', dryRun: true });
    const res = await r.result;
    expect(res.ran).toBe(false);
    expect(res.command).toMatchObject({
      sshHost: '2001:db8::3',
      file: path.join(relay, 'scripts', 'cmdeploy'),
      args: ['run', '--ssh-host', '2001:db8::3'],
      cwd: relay,
      stages: 'activate',
      display: 'CMDEPLOY_STAGES=activate scripts/cmdeploy run --ssh-host 2001:db8::3',
    });
    expect(r.echoed).toEqual([]);
    expect(await cmdeployCalls(relay)).toEqual([]);
    expect(cmdeployCommand(relay, '[2001:db8::3]', 'enable-mail')).toMatchObject({ args: ['run', '--ssh-host', '2001:db8::3'], stages: undefined, display: 'scripts/cmdeploy run --ssh-host 2001:db8::3' });
    const missing = await failure(runCmdeploy({ relayDir: tmp, sshHost: 'h', action: 'activate', dryRun: true }));
    expect(missing.code).toBe('precondition.no_cmdeploy');
    expect(missing.exitCode).toBe(3);
  });

  it('refuses a checkout without chatmail.ini, a cmdeploy that is not executable, and a bad host', async () => {
    await fsp.rename(path.join(relay, 'chatmail.ini'), path.join(relay, 'chatmail.ini.bak'));
    expect((await failure(runCmdeploy({ relayDir: relay, sshHost: 'h', action: 'activate' }))).code).toBe('precondition.no_chatmail_ini');
    await fsp.rename(path.join(relay, 'chatmail.ini.bak'), path.join(relay, 'chatmail.ini'));
    await fsp.chmod(path.join(relay, 'scripts', 'cmdeploy'), 0o644);
    // root may execute nothing without an x bit either
    expect((await failure(runCmdeploy({ relayDir: relay, sshHost: 'h', action: 'activate' }))).message).toContain('is not executable');
    expect(() => cmdeployCommand(relay, '-oProxyCommand=x', 'activate')).toThrow(CmError);
    expect(await cmdeployCalls(relay)).toEqual([]);
  });

  it('an abort stops cmdeploy and reports an interruption', async () => {
    await fsp.writeFile(path.join(relay, 'scripts', 'cmdeploy'), '#!/bin/sh\necho started\nexec sleep 30\n', { mode: 0o755 });
    const ac = new AbortController();
    const r = await run({ sshHost: '127.0.0.3', action: 'activate', signal: ac.signal, onLine: () => ac.abort() });
    const err = await failure(r.result);
    expect(err.code).toBe('step.interrupted');
    expect(err.exitCode).toBe(130);
  });
});

describe('detectStageSupport', () => {
  it('finds CMDEPLOY_STAGES in basedeploy.py of a current checkout, and its release', async () => {
    const s = await detectStageSupport(relay);
    expect(s).toEqual({
      supported: true,
      version: '1.8.0',
      unreleasedChanges: false,
      evidence: { file: 'cmdeploy/src/cmdeploy/basedeploy.py', line: 6, text: 'stages = os.getenv("CMDEPLOY_STAGES", default_stages).split(",")' },
    });
    expect(await requireStageSupport(relay)).toEqual(s);
  });

  it('finds it in deployer.py, where the first releases with stages read it', async () => {
    const dir = await makeRelayCheckout(path.join(tmp, 'first'), { stages: 'deployer', release: '1.7.0', unreleased: true });
    const s = await detectStageSupport(dir);
    expect(s).toMatchObject({ supported: true, version: '1.7.0', unreleasedChanges: true, evidence: { file: 'cmdeploy/src/cmdeploy/deployer.py', line: 6 } });
  });

  it('an old checkout does not support stages, whatever tests, comments or docker files say', async () => {
    const dir = await makeRelayCheckout(path.join(tmp, 'old'), { stages: 'none', release: '1.6.0' });
    const s = await detectStageSupport(dir);
    expect(s.supported).toBe(false);
    expect(s.version).toBe('1.6.0');
    expect(s.reason).toContain('relay 1.6.0');
    const err = await failure(requireStageSupport(dir));
    expect(err.code).toBe('precondition.no_cmdeploy_stages');
    expect(err.exitCode).toBe(3);
    expect(err.hint).toContain('relay 1.8.0 or later');
  });

  it('a directory that is no checkout is an error; a checkout without CHANGELOG.md has no version', async () => {
    expect((await failure(detectStageSupport(tmp))).code).toBe('precondition.not_relay_checkout');
    await fsp.rm(path.join(relay, 'CHANGELOG.md'));
    expect(await detectStageSupport(relay)).toMatchObject({ supported: true, version: undefined });
  });
});

describe('chatmail.ini', () => {
  it('reads mail_domain, and mailboxes_dir with chatmaild\'s default', async () => {
    const ini = await readChatmailIni(relay);
    expect(ini).toMatchObject({
      file: path.join(relay, 'chatmail.ini'),
      mailDomain: 'mail.example.org',
      mailboxesDirKey: undefined,
      mailboxesDir: '/home/vmail/mail/mail.example.org',
      planMailboxesDir: '/home/vmail/mail',
    });
    expect(ini?.params.passthrough_recipients).toBe('\necho@example.org\n@example.net');
  });

  it('takes mailboxes_dir as written', async () => {
    const a = await readChatmailIni(await makeRelayCheckout(path.join(tmp, 'a'), { stages: 'none', mailDomain: 'c.example.net', mailboxesDir: '/srv/mail/c.example.net/' }));
    expect(a).toMatchObject({ mailboxesDirKey: '/srv/mail/c.example.net/', mailboxesDir: '/srv/mail/c.example.net', planMailboxesDir: '/srv/mail' });
    const b = await readChatmailIni(await makeRelayCheckout(path.join(tmp, 'b'), { stages: 'none', mailboxesDir: '/srv/boxes' }));
    expect(b).toMatchObject({ mailboxesDir: '/srv/boxes', planMailboxesDir: '/srv/boxes' });
  });

  it('no file is undefined; a file without mail_domain or with a bad line is an error that names the line', async () => {
    expect(await readChatmailIni(tmp)).toBeUndefined();
    await fsp.writeFile(path.join(tmp, 'chatmail.ini'), '[params]\nmax_user_send_per_minute = 60\n');
    expect((await failure(readChatmailIni(tmp))).message).toContain('has no mail_domain');
    expect(() => parseIni('[params]\nmail_domain = a\nmail_domain = b\n', 'f.ini')).toThrow('f.ini, line 3: mail_domain is set twice');
    expect(() => parseIni('[params]\njust words\n', 'f.ini')).toThrow('f.ini, line 2');
  });
});

describe('which commit the old host was deployed from (preflight, issue 5)', () => {
  it('reads the checkout HEAD from .git, loose, packed or detached, without running git', async () => {
    const sha = 'a'.repeat(40);
    const other = 'b'.repeat(40);
    const git = path.join(tmp, 'co', '.git');
    await fsp.mkdir(path.join(git, 'refs', 'heads'), { recursive: true });
    await fsp.writeFile(path.join(git, 'HEAD'), 'ref: refs/heads/main\n');
    expect(await checkoutCommit(path.join(tmp, 'co'))).toBeUndefined();
    await fsp.writeFile(path.join(git, 'packed-refs'), `# pack-refs\n${other} refs/heads/main\n`);
    expect(await checkoutCommit(path.join(tmp, 'co'))).toBe(other);
    await fsp.writeFile(path.join(git, 'refs', 'heads', 'main'), `${sha}\n`);
    expect(await checkoutCommit(path.join(tmp, 'co'))).toBe(sha);
    await fsp.writeFile(path.join(git, 'HEAD'), `${other}\n`);
    expect(await checkoutCommit(path.join(tmp, 'co'))).toBe(other);
    expect(await checkoutCommit(path.join(tmp, 'nothing'))).toBeUndefined();
  });

  it('warns when /etc/chatmail-version names another commit or carries a diff, and not when it matches', () => {
    const sha = 'c'.repeat(40);
    const host = 'the old host 127.0.0.2';
    expect(chatmailVersionWarning(undefined, sha, host)).toBeUndefined();
    expect(chatmailVersionWarning(`${sha}\n`, sha, host)).toBeUndefined();
    expect(chatmailVersionWarning(`${sha}\n`, 'd'.repeat(40), host)).toMatch(/deployed from commit c{40}, but your checkout is at d{40}/);
    expect(chatmailVersionWarning(`${sha}\ndiff --git a/x b/x\n+1\n`, sha, host)).toMatch(/with local changes/);
    expect(chatmailVersionWarning('1.7.0\n', sha, host)).toMatch(/names no commit/);
    expect(chatmailVersionWarning(`${sha}\n`, undefined, host)).toMatch(/cannot read which commit your checkout is at/);
  });
});
