/**
 * The six steps of the relay project's move procedure, as objects: a title printed before
 * the step acts, what it would do (for --dry-run), and the action, which checks its own
 * effect and records in the journal each external effect that must not be repeated.
 */
import { promises as fsp } from 'node:fs';
import { CmError, ExitCode, formatHostPort } from '../../proto';
import { recordsToSet, serverLabel, waitForRecords } from '../dns';
import { inactiveUnits, MAIL_UNITS, MAILBOX_WRITERS, runningUnits } from '../host-ops';
import { primeDigests, runVerify } from '../ops/verify';
import { cmdeployCommand, type CmdeployAction } from '../relay/cmdeploy';
import { formatDuration } from '../report';
import { checkServices, MAIL_PORTS } from '../service-check';
import { cmdeploy, hostLabel, stopUnits } from './actions';
import type { RunContext } from './context';
import type { StepId } from './journal';
import { CATCH_UP_MAX, CATCH_UP_SECONDS, CATCH_UP_SHARE, catchUp, pass } from './passes';
import { nameServers, preflight } from './preflight';
import { servedPorts } from '../relay/upstream';
import { requireDnsKeys } from './dns-keys';
import { keepNewHostInert, relayFacts, stopWritersAtStep3 } from './relay-units';
import { recordVerify } from './verify-after';
import { carryExternalTls } from './external-tls';

export interface StepFacts {
  bytes?: number;
  files?: number;
}

export interface Step {
  id: StepId;
  title: string;
  /** The host a failure is reported on. */
  side?: 'old' | 'new';
  /** What the step would do, one line each (--dry-run). */
  plan(ctx: RunContext): string[];
  run(ctx: RunContext): Promise<StepFacts | void>;
}


function cmdeployLine(ctx: RunContext, side: 'old' | 'new', action: CmdeployAction): string {
  const c = cmdeployCommand(ctx.relayDir, ctx.plan[side].host, action);
  return `[$ ${c.display}]   (in ${c.cwd})`;
}

/** Runs cmdeploy unless the journal shows that this step already ran it to success. */
async function cmdeployOnce(ctx: RunContext, step: StepId, side: 'old' | 'new', action: CmdeployAction, what: string): Promise<void> {
  if (ctx.journal.hasMark(step, 'cmdeploy')) {
    ctx.out.info(`  cmdeploy ${what} already ran for the ${side} host`);
    return;
  }
  await cmdeploy(ctx, side, action);
  ctx.journal.mark(step, 'cmdeploy');
}

/** Mail must be off on the old host: postfix and dovecot inactive. */
async function requireMailOff(ctx: RunContext, afterFailedCmdeploy = false): Promise<void> {
  const states = await ctx.hosts.old.serviceStates(['postfix', 'dovecot']);
  const left = runningUnits(states, ['postfix', 'dovecot']);
  if (left.length > 0) {
    throw new CmError(
      'step.mail_still_active',
      `mail still runs on ${hostLabel(ctx.plan, 'old')}: ${left.join(', ')}${afterFailedCmdeploy ? '' : ' (cmdeploy --disable-mail did not stop it)'}`,
      {
        hint: `check the old host (systemctl status postfix dovecot on ${ctx.plan.old.host}); stop them with cmdeploy run --disable-mail --ssh-host ${ctx.plan.old.host}, or by hand; nothing was copied in the meantime; then run ${ctx.rerun}`,
        details: { states },
      },
    );
  }
}

const preflightStep: Step = {
  id: 'preflight',
  title: 'Preflight checks',
  plan: () => [
    'check that both agents answer and run the same version',
    "check the checkout: chatmail.ini names this mail_domain, cmdeploy honours CMDEPLOY_STAGES, the old host's /etc/chatmail-version",
    'check free disk on the new host against the size of the relay state (hard links counted once)',
    "check the TTL of A and AAAA at the zone's authoritative servers, and the old host's certificate expiry",
  ],
  async run(ctx) {
    const warnings = await preflight(ctx);
    for (const w of warnings) ctx.warn(w);
  },
};

const initialSync: Step = {
  id: '1',
  title: 'Copy the mailboxes while the old relay still runs (initial sync)',
  side: 'new',
  plan: (ctx) => [
    `the new agent ${ctx.plan.new.agent} pulls ${ctx.plan.mailboxesDir} from the old agent ${ctx.plan.old.agent} (a live pass; same as cmmigrate sync --phase initial)`,
    ctx.opts.noCatchUp
      ? 'no catch-up passes (--no-catch-up)'
      : `then catch-up passes, mail still on, while a pass takes at least ${ctx.opts.catchUpSeconds ?? CATCH_UP_SECONDS} s and changes at least ${CATCH_UP_SHARE * 100} % of the tree (at most ${CATCH_UP_MAX}), so that the final pass carries only the last minutes' changes`,
  ],
  async run(ctx) {
    const s = await pass(ctx, '1', 'initial');
    const more = ctx.opts.noCatchUp ? { bytes: 0, files: 0 } : await catchUp(ctx, s, ctx.opts.catchUpSeconds ?? CATCH_UP_SECONDS);
    return { bytes: s.bytes + more.bytes, files: s.files + more.files };
  },
};

const preconfigure: Step = {
  id: '2',
  title: 'Pre-configure the new host and keep it inactive (cmdeploy install,configure)',
  side: 'new',
  plan: (ctx) => [
    cmdeployLine(ctx, 'new', 'preconfigure'),
    `stop ${MAIL_UNITS.join(', ')} and every unit of the relay that writes a carried root (relay/upstream.ts unitsInertOnNewHost) on the new host through its agent, and check before steps 4 and 6 that they stay stopped`,
  ],
  async run(ctx) {
    const { shape, tls } = await relayFacts(ctx);
    // Before configure, which refuses to run without them; also on a rerun after cmdeploy
    // ran, so that the new host holds what the old one has now.
    await carryExternalTls(ctx, tls);
    await cmdeployOnce(ctx, '2', 'new', 'preconfigure', 'install,configure');
    await stopUnits(ctx, 'new', MAIL_UNITS, 'they must not run before step 6');
    await keepNewHostInert(ctx, shape, 'after-step-2');
  },
};

const disableMail: Step = {
  id: '3',
  title: 'Disable mail on the old host (cmdeploy --disable-mail)',
  side: 'old',
  plan: (ctx) => [
    ...(ctx.opts.noCatchUp
      ? []
      : ["a last catch-up pass, mail still on: the relay's users exist on the new host since step 2, so it gives their entries their owners, and the final pass looks only at what changed after it (the agents' change journals)"]),
    "both agents digest every root, mail still on, and keep the digests, so that step 4's verify looks only at what changed after (the agents' change journals)",
    'ask for confirmation (unless --yes): from here on users cannot send or receive until step 6',
    cmdeployLine(ctx, 'old', 'disable-mail'),
    'check through the old agent that postfix and dovecot are inactive',
    `stop ${MAILBOX_WRITERS.join(', ')} on the old host (they can still change mailboxes)`,
    "then what upstream's --disable-mail leaves running that writes a carried root (relay/upstream.ts unitsToStopAtStep3: timers, chatmail-expire.service waited for when a run is in progress, filtermail-transport, acmetool-reconcile, ...)",
  ],
  async run(ctx) {
    const { plan, journal } = ctx;
    const ran = journal.hasMark('3', 'cmdeploy');
    if (!ran && !ctx.opts.noCatchUp) {
      // Step 1's passes ran before step 2 made the relay's users: their entries went in as
      // root, and a journal's position is committed only by a pass that left nothing for later.
      ctx.out.info("  a last catch-up pass, mail still on: the relay's users exist on the new host now");
      await pass(ctx, '3', 'initial', 'catch-up');
    }
    if (!ran) {
      // Outside the outage: step 4's quick verify then reads only what changes from here on.
      ctx.out.info("  digesting both hosts, mail still on, so that step 4's verify looks only at what changes from now on");
      const p = await primeDigests(ctx.plan, ctx.agents, ctx.signal);
      ctx.out.info(`  digests kept on both hosts in ${formatDuration(p.seconds)} (${p.read} files read)`);
    }
    if (!ran) {
      const ok = await ctx.confirm(
        `Disable mail on the old host ${plan.old.host} now? Users of ${plan.mailDomain} cannot send or receive from now until step 6 (other servers retry: nothing is lost).`,
      );
      if (!ok) {
        throw new CmError('step.not_confirmed', 'you did not confirm disabling mail on the old host; nothing was changed', {
          hint: `run ${ctx.rerun} when you are ready (or with --yes)`,
          exitCode: ExitCode.precondition,
        });
      }
      journal.update((d) => {
        d.outage.started_at ??= new Date().toISOString();
      });
      try {
        await cmdeploy(ctx, 'old', 'disable-mail');
      } catch (err) {
        // cmdeploy stops mail only at its very end: say whether mail still runs.
        await requireMailOff(ctx, true);
        throw err;
      }
    } else ctx.out.info('  cmdeploy --disable-mail already ran for the old host');
    await requireMailOff(ctx);
    // Marked only once its effect is seen: a rerun after "mail still active" runs it again.
    if (!ran) journal.mark('3', 'cmdeploy');
    ctx.out.info(`  postfix and dovecot are inactive on the old host`);
    await stopUnits(ctx, 'old', MAILBOX_WRITERS, 'they can still change mailboxes during the final sync');
    // After every --disable-mail call: its full deploy starts these again.
    await stopWritersAtStep3(ctx, (await relayFacts(ctx)).shape);
  },
};

const finalSync: Step = {
  id: '4',
  title: 'Final sync of every root, verify, then postfix set-permissions and postsuper -s',
  side: 'new',
  plan: (ctx) => [
    'check that mail is off on the old host and postfix, dovecot, opendkim are stopped on the new host',
    `the new agent pulls every root (mailboxes, DKIM keys, ACME, postfix spool, extras) from the old agent (a strict pass; same as cmmigrate sync --phase final)`,
    `verify both trees entry by entry, content digests from what the passes recorded where a file is unchanged since (same as cmmigrate verify --plan ${ctx.opts.plan} --quick); the step fails if they differ`,
    `on the new host through its agent: [$ postfix set-permissions], [$ postsuper -s]`,
  ],
  async run(ctx) {
    await requireMailOff(ctx);
    const states = await ctx.hosts.new.serviceStates([...MAIL_UNITS]);
    const early = runningUnits(states, MAIL_UNITS);
    if (early.length > 0) {
      ctx.warn(`${early.join(', ')} ran on the new host before step 6; stopping them again`);
      await stopUnits(ctx, 'new', MAIL_UNITS, 'they must not run before step 6');
    }
    await keepNewHostInert(ctx, (await relayFacts(ctx)).shape, 'before-step-4');
    const s = await pass(ctx, '4', 'final');
    // Verify before postfix touches the spool: postsuper -s renames queue files after their
    // new inode numbers and set-permissions may repair modes, and both are meant to differ.
    // Quick: inside the outage its cost grows with what changed; the full re-read runs
    // once mail is back on (verify-after.ts).
    const v = await runVerify(ctx.plan, ctx.agents, { quick: true, signal: ctx.signal }, ctx.out);
    recordVerify(ctx.journal, 'quick', v);
    ctx.emit('verify', { step: '4', ok: v.ok, differences: v.differences, first: v.first, quick: true, from_records: v.fromRecords, read: v.read, walks: v.roots.map((r) => ({ root: r.root, ...r.walk })) });
    if (!v.ok) {
      throw new CmError('step.verify_failed', `the new host differs from the old host in ${v.differences} path(s): ${v.first.slice(0, 5).map((d) => `${d.path} (${d.what})`).join('; ')}`, {
        hint: `nothing on the old host changed and mail stays off; find out what changes the listed paths (a service still running on either host?), then run ${ctx.rerun}`,
        details: { differences: v.differences },
      });
    }
    ctx.out.info('  verify: the new host matches the old host');
    for (const [op, label, fn] of [
      ['postfix.set_permissions', 'postfix set-permissions', () => ctx.hosts.new.postfixSetPermissions()],
      ['postsuper.requeue', 'postsuper -s', () => ctx.hosts.new.postsuperRequeue()],
    ] as const) {
      ctx.out.command({ side: 'new', host: ctx.plan.new.host, command: label, op, where: `on the new host ${ctx.plan.new.host}, through its agent` });
      const output = await fn();
      for (const line of output.split('\n').filter(Boolean)) ctx.out.info(`  new| ${line}`);
    }
    return { bytes: s.bytes, files: s.files };
  },
};

const switchDns: Step = {
  id: '5',
  title: 'Point the DNS records of the mail domain at the new host',
  plan: (ctx) => [
    ...recordsToSet(ctx.plan.mailDomain, ctx.plan.newAddresses).map((l) => `print: ${l}`),
    ctx.opts.skipDnsWait
      ? 'do not wait for the records (--skip-dns-wait)'
      : `poll the zone's authoritative servers (${ctx.plan.dnsServers.length ? ctx.plan.dnsServers.join(', ') : 'found by NS look-up'}) until A and AAAA show exactly the new addresses (at most ${formatDuration(ctx.opts.dnsTimeoutSeconds ?? 1800)})`,
  ],
  async run(ctx) {
    const { plan } = ctx;
    const records = recordsToSet(plan.mailDomain, plan.newAddresses);
    ctx.out.info(`  set these records at your DNS provider now:`);
    for (const r of records) ctx.out.info(`    ${r}`);
    ctx.emit('dns_records', { domain: plan.mailDomain, records, expected: plan.newAddresses });
    const started = Date.now();
    if (ctx.opts.skipDnsWait) {
      ctx.warn(`not waiting for the DNS records (--skip-dns-wait): until they point at ${plan.new.host}, mail for ${plan.mailDomain} goes to the old host, which no longer accepts it (senders retry)`);
      return;
    }
    const { servers } = await nameServers(plan);
    ctx.out.info(`  waiting for ${servers.map(serverLabel).join(', ')} to answer with the new addresses ...`);
    try {
      await waitForRecords(plan.mailDomain, servers, plan.newAddresses, {
        timeoutMs: (ctx.opts.dnsTimeoutSeconds ?? 1800) * 1000,
        intervalMs: (ctx.opts.dnsIntervalSeconds ?? 5) * 1000,
        signal: ctx.signal,
        onPoll: (check, elapsed) => {
          ctx.emit('dns_poll', { matches: check.matches, problems: check.problems, elapsed_seconds: elapsed / 1000 });
          if (!check.matches) ctx.out.progress(`  DNS not switched yet after ${formatDuration(elapsed / 1000)}: ${check.problems.join('; ')}`);
        },
      });
    } finally {
      ctx.out.endProgress();
      ctx.journal.update((d) => {
        d.outage.dns_seconds = (d.outage.dns_seconds ?? 0) + (Date.now() - started) / 1000;
      });
    }
    ctx.out.info(`  every authoritative server answers with the new addresses`);
  },
};

/** After step 6: the units whose ports a connect cannot probe run (relay/upstream.ts servedPorts, check 'unit'). */
async function checkRelayUnits(ctx: RunContext): Promise<void> {
  const { shape } = await relayFacts(ctx);
  const units = servedPorts(shape)
    .filter((p) => p.check === 'unit')
    .map((p) => p.unit);
  const states = await ctx.hosts.new.serviceStates(units);
  const down = inactiveUnits(states, units);
  if (down.length > 0) {
    throw new CmError('step.service_not_active', `${down.join(', ')} do${down.length === 1 ? 'es' : ''} not run on ${hostLabel(ctx.plan, 'new')} (${servedPorts(shape).filter((p) => p.check === 'unit').map((p) => `${p.port}/${p.proto}`).join(', ')})`, {
      hint: `read why with journalctl -u ${units.join(' -u ')} on ${ctx.plan.new.host}, fix it, then run ${ctx.rerun}`,
      details: { states },
    });
  }
  ctx.out.info(`  ${units.join(', ')} run on the new host`);
}

async function caOf(ctx: RunContext): Promise<Buffer | undefined> {
  if (!ctx.plan.checks.caFile) return undefined;
  try {
    return await fsp.readFile(ctx.plan.checks.caFile);
  } catch (err) {
    throw new CmError('plan.invalid', `cannot read checks.ca_file ${ctx.plan.checks.caFile}: ${(err as Error).message}`, { hint: `correct checks.ca_file in ${ctx.plan.file}` });
  }
}

const activate: Step = {
  id: '6',
  title: 'Activate the new host (cmdeploy activate) and check that it serves mail',
  side: 'new',
  plan: (ctx) => [
    cmdeployLine(ctx, 'new', 'activate'),
    'on the new host through its agent: [$ systemctl daemon-reload] (an activate-only run never reloads systemd, so the drop-ins step 2 wrote need it)',
    `restart ${MAIL_UNITS.join(', ')} on the new host through its agent (activate does not restart a running service; a later run of this step only starts what is stopped)`,
    `check that the new host accepts connections on ${MAIL_PORTS.join(', ')}, answers an HTTP request on 80, and presents a certificate for ${ctx.plan.mailDomain} on 993 and 465 and on 143 after STARTTLS`,
    'check through the new agent that turnserver.service runs (TURN on 3478/udp cannot be probed by a connect), and iroh-relay.service when chatmail.ini leaves iroh_relay unset',
    `check that ${ctx.plan.mailDomain}'s DKIM record (opendkim._domainkey) carries the public key of the carried /etc/dkimkeys/opendkim.private; an error names the value it must have`,
  ],
  async run(ctx) {
    const { plan, journal } = ctx;
    if (!journal.hasMark('6', 'cmdeploy')) await keepNewHostInert(ctx, (await relayFacts(ctx)).shape, 'before-step-6');
    await cmdeployOnce(ctx, '6', 'new', 'activate', 'activate');
    // An activate-only run never reloads systemd (chatmail/relay cmdeploy/src/cmdeploy/
    // basedeploy.py Deployer.ensure_service): the drop-ins step 2 wrote for dovecot, postfix
    // and opendkim (relay/upstream.ts unitsWithStep2DropIns) take effect with this reload and
    // the restart below.
    ctx.out.command({ side: 'new', host: plan.new.host, command: 'systemctl daemon-reload', op: 'systemd.daemon_reload', where: `on the new host ${plan.new.host}, through its agent` });
    await ctx.hosts.new.daemonReload();
    // Restarted once after activate (which leaves a running service as it is); a later run
    // of this step only starts what is not running, and does not interrupt a serving host.
    const restarted = journal.hasMark('6', 'restarted');
    const verb = restarted ? 'start' : 'restart';
    ctx.out.info(`  ${restarted ? 'starting (where stopped)' : 'restarting'} ${MAIL_UNITS.join(', ')} on the new host`);
    ctx.emit('host_op', { side: 'new', op: `service.${verb}`, units: MAIL_UNITS });
    const states = restarted ? await ctx.hosts.new.startServices([...MAIL_UNITS]) : await ctx.hosts.new.restartServices([...MAIL_UNITS]);
    const down = inactiveUnits(states, MAIL_UNITS);
    if (down.length > 0) {
      throw new CmError('step.service_not_active', `${down.join(', ')} did not start on ${hostLabel(plan, 'new')}`, {
        hint: `read why with journalctl -u ${MAIL_UNITS.join(' -u ')} on ${plan.new.host}, fix it, then run ${ctx.rerun}`,
        details: { states },
      });
    }
    if (!restarted) journal.mark('6', 'restarted');
    const endpoints = Object.fromEntries(MAIL_PORTS.map((p) => [p, plan.checks.newPorts[String(p) as keyof typeof plan.checks.newPorts] ?? formatHostPort(plan.new.host, p)]));
    const report = await checkServices({ host: plan.new.host, mailDomain: plan.mailDomain, side: 'new', endpoints, ca: await caOf(ctx) });
    for (const r of report.results) {
      const cert = r.certificate ? `, ${r.port === 143 ? 'after STARTTLS ' : ''}certificate for ${plan.mailDomain} valid until ${r.certificate.validTo.toISOString().slice(0, 10)}` : '';
      ctx.out.info(`  port ${r.port} at ${r.endpoint}: open${r.httpStatus ? `, HTTP ${r.httpStatus}` : ''}${cert}`);
    }
    for (const w of report.warnings) ctx.warn(w);
    journal.update((d) => {
      d.outage.ended_at = new Date().toISOString();
    });
    await checkRelayUnits(ctx);
    const { tls } = await relayFacts(ctx);
    // external/deployer.py: nothing of the relay renews external files.
    if (tls.mode === 'external') ctx.warn(`the certificate files ${tls.certPath} and ${tls.keyPath} are renewed outside the relay: ${tls.renewedBy}`);
    try {
      await requireDnsKeys(ctx);
    } catch (err) {
      if (err instanceof CmError && err.code === 'step.dns_record_mismatch') throw err;
      ctx.warn(`cannot check the DKIM and CAA records of ${plan.mailDomain}: ${(err as Error).message}`);
    }
  },
};

export const STEPS: readonly Step[] = [preflightStep, initialSync, preconfigure, disableMail, finalSync, switchDns, activate];

export function stepById(id: StepId): Step {
  return STEPS.find((s) => s.id === id)!;
}
