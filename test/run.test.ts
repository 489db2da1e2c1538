/**
 * `cmmigrate run` end to end (issue 5): real agents on loopback, a real NSD, the behaving
 * cmdeploy stand-in (strict about argv, CMDEPLOY_STAGES and working directory), the
 * stand-in host tools on the agents' PATH and mail ports that open as units start.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CmError } from '../proto/errors';
import { Journal } from '../controller/run/journal';
import { selectSteps } from '../controller/run/runner';
import { setupRehearsal, type Rehearsal } from './support/rehearsal';
import { writeCheckoutSources } from './support/relay-checkout';
import { unitState } from './support/standin-relay';
import { snapshotTree } from './support/tree-snapshot';
import { reportFigure } from './support/fault-checks';
import { ALL_ROOT_PATHS, findTempFiles } from './support/harness';

const TIMEOUT = 240_000;
let r: Rehearsal | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

/** JSON events of a --json run. */
function events(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function states(r: Rehearsal): Record<string, string> {
  const j = r.journal();
  return Object.fromEntries(Object.entries(j.steps as Record<string, { state: string }>).map(([k, v]) => [k, v.state]));
}

/** The cmdeploy calls as `action host`, in order; every one must have been taken as right. */
function cmdeployCalls(r: Rehearsal): string[] {
  const calls = r.calls();
  for (const c of calls) expect(c.verdict, JSON.stringify(c)).toBe('ok');
  return calls.map((c) => `${c.action} ${c.host}`);
}

const ALL_DONE = { preflight: 'done', '1': 'done', '2': 'done', '3': 'done', '4': 'done', '5': 'done', '6': 'done' };

describe('cmmigrate run', () => {
  it(
    'dry-runs without changing anything, then moves the relay in six checked steps',
    async () => {
      r = await setupRehearsal();
      const plan = path.relative(r.dir, r.plan);
      const oldBefore = await snapshotTree(r.oldRoot, ALL_ROOT_PATHS);

      const dry = await r.run(['run', '--plan', plan, '--dry-run']);
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.stdout).toContain('CMDEPLOY_STAGES=install,configure scripts/cmdeploy run --ssh-host 127.0.0.3');
      expect(dry.stdout).toContain('scripts/cmdeploy run --ssh-host 127.0.0.2 --disable-mail');
      expect(dry.stdout).toContain('CMDEPLOY_STAGES=activate scripts/cmdeploy run --ssh-host 127.0.0.3');
      expect(dry.stdout).toContain('mail.example.org. 300 IN A 127.0.0.3');
      expect(dry.stdout).toContain('remove every AAAA record');
      expect(r.calls()).toEqual([]);
      expect(r.journal()).toBeUndefined();
      expect(await fsp.readdir(r.newRoot)).toEqual(['etc']);

      const stop = r.autoSwitchDns(300);
      const run = await r.run(['run', '--plan', plan, '--yes', '--json', '--dns-interval', '0.2'], TIMEOUT);
      stop();
      expect(run.code, run.stderr).toBe(0);
      expect(states(r)).toEqual(ALL_DONE);
      // cmdeploy: exactly the three calls, each with its stages and cwd (the stand-in checks them).
      expect(cmdeployCalls(r)).toEqual(['preconfigure 127.0.0.3', 'disable-mail 127.0.0.2', 'activate 127.0.0.3']);
      expect(r.calls().map((c) => c.stages)).toEqual(['install,configure', null, 'activate']);
      expect(new Set(r.calls().map((c) => c.cwd))).toEqual(new Set([r.relayDir]));

      // The effects: mail off on the old host, on on the new one; the new root holds the old
      // relay (verified in step 4 by the agents; here the DKIM key step 2 made was replaced).
      for (const u of ['postfix', 'dovecot', 'doveauth', 'filtermail', 'chatmail-expire.timer']) expect(unitState(r.oldHostState, u), u).toBe('inactive');
      for (const u of ['postfix', 'dovecot', 'opendkim']) expect(unitState(r.newHostState, u), u).toBe('active');
      expect(await fsp.readFile(path.join(r.newRoot, 'etc/dkimkeys/opendkim.private'), 'utf8')).toBe(await fsp.readFile(path.join(r.oldRoot, 'etc/dkimkeys/opendkim.private'), 'utf8'));
      expect(r.services.new.certificateSource(993)).toBe('root');
      expect(await findTempFiles(r.newRoot)).toEqual([]);
      // The old host was only read.
      expect(await snapshotTree(r.oldRoot, ALL_ROOT_PATHS)).toEqual(oldBefore);
      const hostCalls = await fsp.readFile(path.join(r.newHostState, 'calls.log'), 'utf8');
      expect(hostCalls).toMatch(/postfix set-permissions\npostsuper -s/);

      const ev = events(run.stdout);
      const steps = ev.filter((e) => e.event === 'step' && e.state === 'done').map((e) => e.step);
      expect(steps.sort()).toEqual(['1', '2', '3', '4', '5', '6', 'preflight']);
      expect(ev.filter((e) => e.event === 'command').map((e) => e.command)).toEqual(
        expect.arrayContaining(['CMDEPLOY_STAGES=install,configure scripts/cmdeploy run --ssh-host 127.0.0.3', 'postfix set-permissions', 'postsuper -s']),
      );
      const done = ev.at(-1)!;
      expect(done.event).toBe('done');
      expect(done.complete).toBe(true);
      expect(done.outage_seconds as number).toBeGreaterThan(0);
      expect(done.dns_seconds as number).toBeLessThanOrEqual(done.outage_seconds as number);
      // --json is quiet for people: no titles on stderr.
      expect(run.stderr).not.toContain('==> Step');
      // The log file: pino lines, one per event.
      const log = await fsp.readFile(path.join(r.dir, '.cmmigrate', 'run.log'), 'utf8');
      // Neither the log nor the events nor the text carry key material or password hashes.
      const dkim = (await fsp.readFile(path.join(r.oldRoot, 'etc/dkimkeys/opendkim.private'), 'utf8')).split('\n').filter((l) => l.length >= 40 && !l.startsWith('-----'));
      const mailboxes = path.join(r.oldRoot, 'home/vmail/mail/mail.example.org');
      const address = (await fsp.readdir(mailboxes)).find((n) => n.includes('@'))!;
      const hash = (await fsp.readFile(path.join(mailboxes, address, 'password'), 'utf8')).trim();
      expect(dkim.length).toBeGreaterThan(0);
      expect(hash.length).toBeGreaterThan(10);
      for (const secret of [...dkim, hash]) {
        for (const [name, text] of [['run.log', log], ['--json', run.stdout], ['stderr', run.stderr]] as const) expect(text.includes(secret), name).toBe(false);
      }
      expect(log.split('\n').filter(Boolean).map((l) => JSON.parse(l).msg)).toEqual(expect.arrayContaining(['run started', 'step done', 'run ended']));

      // status shows the journal; a rerun has nothing left to do and calls nothing.
      const st = await r.run(['status', '--plan', plan]);
      expect(st.code, st.stderr).toBe(0);
      expect(st.stdout).toMatch(/Step 4\/6\s+done .* in \d+ files/);
      expect(st.stdout).toMatch(/mail was off for/);
      const again = await r.run(['run', '--plan', plan, '--yes']);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toContain('Every step is done');
      expect(r.calls()).toHaveLength(3);
      // Earlier steps must not run again once the relay runs on the new host; rollback neither.
      const back = await r.run(['run', '--plan', plan, '--yes', '--from', '3']);
      expect(back.code).toBe(3);
      expect(back.stderr).toContain('step.already_migrated');
      const rb = await r.run(['rollback', '--plan', plan, '--yes']);
      expect(rb.code).toBe(3);
      expect(rb.stderr).toContain('step.rollback_refused');
      expect(r.calls()).toHaveLength(3);
      // --only 6 checks the serving host again without restarting its mail services.
      const callsBefore = (await fsp.readFile(path.join(r.newHostState, 'calls.log'), 'utf8')).split('\n').length;
      const recheck = await r.run(['run', '--plan', plan, '--only', '6']);
      expect(recheck.code, recheck.stderr).toBe(0);
      const newCalls = (await fsp.readFile(path.join(r.newHostState, 'calls.log'), 'utf8')).split('\n').slice(callsBefore - 1).join('\n');
      expect(newCalls).toContain('systemctl start postfix dovecot opendkim');
      expect(newCalls).not.toContain('restart');
      expect(r.calls()).toHaveLength(3);
    },
    TIMEOUT,
  );

  it(
    'a failure at each step stops with the step, the host and the next command; a rerun continues there',
    async () => {
      r = await setupRehearsal();
      const plan = 'plan.toml';
      const run = (...extra: string[]) => r!.run(['run', '--plan', plan, '--yes', '--dns-interval', '0.2', ...extra], TIMEOUT);
      const failedAt = (step: string, res: { code: number | null; stderr: string }, code: string): void => {
        expect(res.code, res.stderr).toBe(1);
        expect(res.stderr).toContain(`[${code}]`);
        expect(res.stderr).toMatch(/next: .*cmmigrate run --plan plan\.toml/);
        const j = r!.journal().steps[step];
        expect(j.state).toBe('failed');
        expect(j.error.code).toBe(code);
        checked.push(step);
      };
      /** The steps whose fault was injected and whose failure was checked. */
      const checked: string[] = [];

      // Step 2: cmdeploy install,configure exits 1. Step 1 ran beside it and is done.
      r.setFault('fail-preconfigure', true);
      const s2 = await run();
      failedAt('2', s2, 'step.cmdeploy_failed');
      expect(s2.stderr).toMatch(/step 2 \(.*\): .*the new host 127\.0\.0\.3/);
      expect(states(r)['1']).toBe('done');
      r.setFault('fail-preconfigure', false);

      // Step 3: --disable-mail exits 0 but dovecot keeps running.
      r.setFault('keep-mail-dovecot', true);
      const s3 = await run();
      failedAt('3', s3, 'step.mail_still_active');
      expect(s3.stderr).toContain('==> Step 3/6: Disable mail on the old host');
      expect(s3.stderr).toContain('[$ scripts/cmdeploy run --ssh-host 127.0.0.2 --disable-mail]');
      expect(s3.stderr).toContain('dovecot (active)');
      expect(cmdeployCalls(r)).toEqual(['preconfigure 127.0.0.3', 'preconfigure 127.0.0.3', 'disable-mail 127.0.0.2']);
      r.setFault('keep-mail-dovecot', false);

      // Step 4: the new host holds a file the old one has not, which cmmigrate did not write:
      // the final sync keeps it, and verify fails.
      const stray = path.join(r.newRoot, 'home/vmail/mail/mail.example.org/stray.txt');
      await fsp.mkdir(path.dirname(stray), { recursive: true });
      await fsp.writeFile(stray, 'not from the old host\n');
      const s4 = await run();
      failedAt('4', s4, 'step.verify_failed');
      expect(s4.stderr).toContain('stray.txt');
      // disable-mail ran once more (its mark was not set while mail ran), then step 4 ran.
      expect(cmdeployCalls(r).filter((c) => c.startsWith('disable-mail'))).toHaveLength(2);
      await fsp.rm(stray);

      // Step 5: the records never switch within --dns-timeout.
      const s5 = await run('--dns-timeout', '1');
      failedAt('5', s5, 'dns.not_switched');
      expect(s5.stderr).toContain('mail.example.org. 300 IN A 127.0.0.3');
      await r.switchDns();

      // Step 6: port 465 stays closed after activate.
      await r.services.new.setClosed([465]);
      const s6 = await run();
      failedAt('6', s6, 'step.port_closed');
      expect(s6.stderr).toMatch(/port 465/);
      await r.services.new.setClosed([]);

      const fin = await run();
      expect(fin.code, fin.stderr).toBe(0);
      expect(states(r)).toEqual(ALL_DONE);
      // Counted once the rerun after the last fault finished: a row with faults never resolved is not printed.
      reportFigure('run-step-faults', { faults: checked.length, steps: checked.join(' ') });
      // No cmdeploy effect was repeated beyond what was safe: activate ran once (its mark held).
      expect(cmdeployCalls(r)).toEqual(['preconfigure 127.0.0.3', 'preconfigure 127.0.0.3', 'disable-mail 127.0.0.2', 'disable-mail 127.0.0.2', 'activate 127.0.0.3']);
      expect(r.journal().steps['2'].attempts).toBe(2);
      expect(r.journal().steps['6'].attempts).toBe(2);
    },
    TIMEOUT,
  );

  it(
    'the controller killed mid-step continues on the next run without repeating finished steps',
    async () => {
      r = await setupRehearsal();
      const plan = 'plan.toml';
      // Killed while step 5 waits for DNS (mail is off, the final sync done).
      const { spawn } = await import('node:child_process');
      const { CONTROLLER_CLI } = await import('./support/harness');
      const child = spawn(process.execPath, [CONTROLLER_CLI, 'run', '--plan', plan, '--yes', '--dns-interval', '0.2'], { cwd: r.dir, stdio: 'ignore' });
      const deadline = Date.now() + 180_000;
      while (r.journal()?.steps?.['5']?.state !== 'running') {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`step 5 never started: ${JSON.stringify(r.journal()?.steps)}`);
        await new Promise((res) => setTimeout(res, 100));
      }
      child.kill('SIGKILL');
      await new Promise((res) => child.once('exit', res));
      expect(states(r)['5']).toBe('running');
      const before = r.calls().length;
      expect(before).toBe(2);

      // The status shows where it stopped; the rerun continues at step 5.
      const st = await r.run(['status', '--plan', plan]);
      expect(st.stdout).toMatch(/Step 5\/6\s+running/);
      const stop = r.autoSwitchDns(200);
      const again = await r.run(['run', '--plan', plan, '--yes', '--dns-interval', '0.2'], TIMEOUT);
      stop();
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).not.toContain('==> Step 4/6');
      expect(again.stderr).toContain('==> Step 5/6: Point the DNS records');
      expect(again.stderr).toContain('[$ CMDEPLOY_STAGES=activate scripts/cmdeploy run --ssh-host 127.0.0.3]');
      expect(again.stderr).toMatch(/new\| /); // cmdeploy's output, streamed
      expect(again.stderr).toMatch(/raise the TTL/);
      expect(again.stderr).toMatch(/cmmigrate uninstall-agent old --plan plan\.toml/);
      expect(again.stderr).toMatch(/Mail was off for .* of which .* waiting for DNS/);
      expect(cmdeployCalls(r)).toEqual(['preconfigure 127.0.0.3', 'disable-mail 127.0.0.2', 'activate 127.0.0.3']);
      expect(states(r)).toEqual(ALL_DONE);
    },
    TIMEOUT,
  );

  it(
    'rolls back before step 6: mail back on the old host, off on the new; the next run continues at step 3',
    async () => {
      r = await setupRehearsal();
      const plan = 'plan.toml';
      const s5 = await r.run(['run', '--plan', plan, '--yes', '--dns-timeout', '0.5', '--dns-interval', '0.2'], TIMEOUT);
      expect(s5.code, s5.stderr).toBe(1);
      expect(states(r)['5']).toBe('failed');

      const rb = await r.run(['rollback', '--plan', plan, '--yes'], TIMEOUT);
      expect(rb.code, rb.stderr).toBe(0);
      for (const u of ['postfix', 'dovecot']) expect(unitState(r.oldHostState, u)).toBe('active');
      for (const u of ['postfix', 'dovecot', 'opendkim']) expect(unitState(r.newHostState, u)).toBe('inactive');
      expect(states(r)).toMatchObject({ '1': 'done', '2': 'done', '3': 'pending', '4': 'pending', '5': 'pending', '6': 'pending' });
      expect(r.calls().at(-1)).toMatchObject({ action: 'enable-mail', host: '127.0.0.2', stages: null, verdict: 'ok' });

      // Without --yes and without a terminal, step 3 asks and cannot: nothing is disabled.
      const ask = await r.run(['run', '--plan', plan], TIMEOUT);
      expect(ask.code).toBe(3);
      expect(ask.stderr).toContain('step.confirmation_needed');
      expect(ask.stderr).toContain('--yes');
      expect(unitState(r.oldHostState, 'postfix')).toBe('active');

      await r.switchDns();
      const fin = await r.run(['run', '--plan', plan, '--yes', '--dns-interval', '0.2'], TIMEOUT);
      expect(fin.code, fin.stderr).toBe(0);
      expect(fin.stderr).not.toContain('==> Step 1/6');
      expect(cmdeployCalls(r)).toEqual(['preconfigure 127.0.0.3', 'disable-mail 127.0.0.2', 'enable-mail 127.0.0.2', 'disable-mail 127.0.0.2', 'activate 127.0.0.3']);
      expect(states(r)).toEqual(ALL_DONE);
    },
    TIMEOUT,
  );
});

describe('run: preflight', () => {
  it(
    'refuses a checkout without CMDEPLOY_STAGES and a chatmail.ini of another domain before anything changes, and warns on a long TTL',
    async () => {
      r = await setupRehearsal({ dnsTtl: 3600 });
      const plan = 'plan.toml';
      // A checkout from before relay 1.8.0: its cmdeploy never reads CMDEPLOY_STAGES.
      await fsp.rm(path.join(r.relayDir, 'cmdeploy'), { recursive: true });
      await writeCheckoutSources(r.relayDir, { stages: 'none', release: '1.7.0', mailDomain: 'mail.example.org' });
      // A dry run still lists every step, then fails with the preflight's finding.
      const dry = await r.run(['run', '--plan', plan, '--dry-run'], TIMEOUT);
      expect(dry.code, dry.stderr).toBe(3);
      expect(dry.stdout).toContain('Step 6/6');
      expect(dry.stderr).toContain('[precondition.no_cmdeploy_stages]');
      expect(r.journal()).toBeUndefined();
      const old = await r.run(['run', '--plan', plan, '--yes', '--dns-timeout', '1'], TIMEOUT);
      expect(old.code, old.stderr).toBe(3);
      expect(old.stderr).toContain('[precondition.no_cmdeploy_stages]');
      expect(old.stderr).toMatch(/next: .*1\.8\.0/);
      expect(r.journal().steps.preflight.state).toBe('failed');
      expect(r.journal().steps['1'].state).toBe('pending');

      await writeCheckoutSources(r.relayDir, { stages: 'basedeploy', release: '1.8.0', mailDomain: 'other.example.org' });
      const other = await r.run(['run', '--plan', plan, '--yes', '--dns-timeout', '1'], TIMEOUT);
      expect(other.code, other.stderr).toBe(3);
      expect(other.stderr).toContain('[precondition.chatmail_ini]');
      expect(other.stderr).toContain('other.example.org');
      expect(r.calls()).toEqual([]);
      expect(await fsp.readdir(r.newRoot)).toEqual(['etc']);

      await writeCheckoutSources(r.relayDir, { stages: 'basedeploy', release: '1.8.0', mailDomain: 'mail.example.org' });
      const ok = await r.run(['run', '--plan', plan, '--only', 'preflight'], TIMEOUT);
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stderr).toMatch(/warning: the A record of mail\.example\.org has a TTL of 3600 s/);
      expect(r.journal().steps.preflight.state).toBe('done');
      expect(r.calls()).toEqual([]);
    },
    TIMEOUT,
  );
});

describe('run: which steps', () => {
  const ids = { mailDomain: 'mail.example.org', oldHost: '127.0.0.2', newHost: '127.0.0.3' };
  const journalWith = (done: string[]): Journal => {
    const j = Journal.inMemory(ids);
    for (const id of done) j.finish(id as never);
    return j;
  };
  const rerun = 'cmmigrate run --plan p.toml';

  it('continues at the first step not done, and --from/--only need their prerequisites', () => {
    expect(selectSteps(journalWith([]), { plan: 'p.toml' }, rerun)).toEqual(['preflight', '1', '2', '3', '4', '5', '6']);
    expect(selectSteps(journalWith(['preflight', '1', '2', '3']), { plan: 'p.toml' }, rerun)).toEqual(['4', '5', '6']);
    expect(selectSteps(journalWith(['preflight', '1', '2']), { plan: 'p.toml', from: '1' }, rerun)).toEqual(['1', '2', '3', '4', '5', '6']);
    expect(selectSteps(journalWith(['preflight', '1', '2', '3']), { plan: 'p.toml', only: '4' }, rerun)).toEqual(['4']);
    const err = (() => {
      try {
        selectSteps(journalWith(['preflight', '1']), { plan: 'p.toml', only: '4' }, rerun);
      } catch (e) {
        return e as CmError;
      }
      return undefined;
    })();
    expect(err?.code).toBe('step.out_of_order');
    expect(err?.message).toContain('step 2 and step 3');
    expect(err?.exitCode).toBe(3);
  });
});
