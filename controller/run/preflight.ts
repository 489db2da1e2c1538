/**
 * The checks before step 1. Failing ones stop the run before anything changes
 * (`precondition.*`, exit 3); the rest are warnings the operator reads before the
 * destructive steps: a DNS TTL above 300 s, a certificate that expires soon, a checkout
 * at another commit than the one the old host was deployed from.
 */
import { CmError, formatHostPort, type InfoReply__Output } from '../../proto';
import { unary, type AgentHandle } from '../agent-client';
import { readChatmailIni } from '../relay/chatmail-ini';
import { debianWarning } from '../relay/debian';
import { chatmailIniLocation } from '../relay/ini-location';
import { relayShapeOf } from '../relay/shape';
import type { TlsSetup } from '../relay/tls-mode';
import { requireRunnableCheckout } from '../relay/venv';
import { chatmailVersionWarning, checkoutCommit } from '../relay/git-head';
import { requireStageSupport } from '../relay/stages';
import { assertMovableDomain, findAuthoritativeServers, parseNameServers, queryRecords, serverLabel, ttlWarnings, type NameServer } from '../dns';
import { formatBytes } from '../report';
import { expiryWarning, fetchCertificate } from '../service-check';
import type { Plan } from '../plan';
import { shQuote } from '../ssh';
import type { RunContext } from './context';
import { dnsKeyProblems } from './dns-keys';

/** The TLS mode in words for preflight's notes. */
export function tlsModeLine(tls: TlsSetup): string {
  if (tls.mode === 'external') return `external (tls_external_cert_and_key): ${tls.certPath} and ${tls.keyPath}, carried before step 2 (its configure checks them); renewed by ${tls.renewedBy}`;
  if (tls.mode === 'self') return `self-signed (${tls.certPath}, ${tls.keyPath}), carried; ${tls.renewedBy}`;
  return `ACME (acmetool, ${tls.carry.join(', ')} carried with its account); renewed by ${tls.renewedBy}`;
}

/** Info of one agent, with the failure named for the operator. */
async function agentInfo(a: AgentHandle, planArg: string, rerun: string): Promise<InfoReply__Output> {
  try {
    return await unary(a, a.client.Info, {});
  } catch (err) {
    const e = err instanceof CmError ? err : new CmError('connect.failed', String(err));
    throw new CmError(e.code, `the ${a.side} agent at ${a.address} does not answer: ${e.message}`, {
      hint: `check it with: cmmigrate agents --plan ${planArg}; install or start it with: cmmigrate install-agent ${a.side} --plan ${planArg}; then run ${rerun}`,
      exitCode: e.exitCode,
      cause: e,
    });
  }
}

/** Both agents answer, run the same cmmigrate version and protocol, and each holds its role. */
export async function checkAgents(ctx: Pick<RunContext, 'agents' | 'rerun' | 'opts'>): Promise<{ old: InfoReply__Output; new: InfoReply__Output }> {
  const planArg = shQuote(ctx.opts.plan);
  const [o, n] = await Promise.all([agentInfo(ctx.agents.old, planArg, ctx.rerun), agentInfo(ctx.agents.new, planArg, ctx.rerun)]);
  if (o.version !== n.version || o.protocol !== n.protocol) {
    throw new CmError(
      'precondition.agent_versions',
      `the agents run different versions: old ${ctx.agents.old.address} runs cmmigrate ${o.version} (protocol ${o.protocol}), new ${ctx.agents.new.address} runs ${n.version} (protocol ${n.protocol})`,
      { hint: `install the same version on both: cmmigrate install-agent old --plan ${planArg} and cmmigrate install-agent new --plan ${planArg}, then run ${ctx.rerun}` },
    );
  }
  for (const [side, info] of [['old', o], ['new', n]] as const) {
    if (info.role && info.role !== side) {
      throw new CmError('precondition.agent_role', `the agent at ${ctx.agents[side].address} holds the ${info.role} host's certificate, but the plan has it as the ${side} host`, {
        hint: `install the right material with cmmigrate install-agent ${side} --plan ${planArg}, then run ${ctx.rerun}`,
      });
    }
  }
  return { old: o, new: n };
}

/** The zone's authoritative servers: the plan's dns.servers, else found by NS look-up. */
export async function nameServers(plan: Plan): Promise<{ zone?: string; servers: NameServer[] }> {
  if (plan.dnsServers.length > 0) return { servers: parseNameServers(plan.dnsServers) };
  return findAuthoritativeServers(plan.mailDomain);
}

/** Runs every preflight check; resolves with the warnings, rejects on the first failure. */
export async function preflight(ctx: RunContext): Promise<string[]> {
  const { plan, out } = ctx;
  const warnings: string[] = [];
  const note = (line: string): void => out.info(`  ${line}`);

  assertMovableDomain(plan.mailDomain);
  note(`mail_domain ${plan.mailDomain} is a DNS name`);

  if (plan.newAddresses.ipv4.length + plan.newAddresses.ipv6.length === 0) {
    throw new CmError('precondition.new_addresses', `the plan names no address of the new host ${plan.new.host} for the A and AAAA records of ${plan.mailDomain}`, {
      hint: `add ipv4 = "..." (and ipv6 = "..." if it has one) to the [new] table of ${plan.file}, then run ${ctx.rerun}`,
    });
  }

  const info = await checkAgents(ctx);
  note(`agents: old ${ctx.agents.old.address} and new ${ctx.agents.new.address} answer, both cmmigrate ${info.old.version}`);

  // cmdeploy.py reads $CHATMAIL_INI before ./chatmail.ini: read the file it will read (every
  // cmdeploy call names it explicitly, relay/cmdeploy.ts cmdeployEnv).
  const where = chatmailIniLocation(ctx.relayDir, process.env);
  const ini = await readChatmailIni(ctx.relayDir, process.env);
  if (!ini) {
    throw new CmError('precondition.no_chatmail_ini', `${where.file}${where.from === 'CHATMAIL_INI' ? ' (named by $CHATMAIL_INI)' : ''} does not exist: cmdeploy reads the relay's configuration from it`, {
      hint: `copy the chatmail.ini the relay was deployed with into ${ctx.relayDir}, then run ${ctx.rerun}`,
    });
  }
  if (ini.mailDomain.toLowerCase() !== plan.mailDomain.toLowerCase()) {
    throw new CmError('precondition.chatmail_ini', `${ini.file} says mail_domain = ${ini.mailDomain}, but the plan moves ${plan.mailDomain}`, {
      hint: `use the checkout the relay is deployed from (relay_dir in ${plan.file}), then run ${ctx.rerun}`,
    });
  }
  if (ini.planMailboxesDir !== plan.mailboxesDir) {
    throw new CmError('precondition.chatmail_ini', `${ini.file} keeps the mailboxes in ${ini.mailboxesDir}, but the plan carries ${plan.mailboxesDir}`, {
      hint: `set mailboxes_dir = "${ini.planMailboxesDir}" in the [relay] table of ${plan.file}, then run ${ctx.rerun}`,
    });
  }
  const stages = await requireStageSupport(ctx.relayDir);
  note(`checkout ${ctx.relayDir}${stages.version ? ` (relay ${stages.version})` : ''} honours CMDEPLOY_STAGES (${stages.evidence?.file}:${stages.evidence?.line})`);
  const venv = await requireRunnableCheckout(ctx.relayDir);
  note(`checkout's venv: cmdeploy installed, pyinfra ${venv.pyinfraVersion} (scripts/initenv.sh has run)`);
  if (where.from === 'CHATMAIL_INI') note(`chatmail.ini: ${where.file}, named by $CHATMAIL_INI (every cmdeploy call gets it)`);

  const { tls } = relayShapeOf(ini.params, ini.file);
  note(`TLS: ${tlsModeLine(tls)}`);
  if (tls.mode === 'external') {
    // external/deployer.py: step 2's configure fails unless both files exist on the new host.
    const files = await ctx.hosts.old.externalTlsFiles();
    const missing = [tls.certPath, tls.keyPath].filter((p) => !files.present.includes(p));
    if (missing.length > 0) {
      throw new CmError('precondition.tls_files_missing', `${ini.file} sets tls_external_cert_and_key = ${tls.certPath} ${tls.keyPath}, but the old host ${plan.old.host} has no regular file at ${missing.join(' and ')}`, {
        hint: `put the certificate and key there on the old host (or correct tls_external_cert_and_key and deploy the old host with it), then run ${ctx.rerun}`,
        details: { missing },
      });
    }
    note(`external TLS files exist on the old host: ${tls.certPath}, ${tls.keyPath}`);
  }

  for (const side of ['old', 'new'] as const) {
    const text = await ctx.hosts[side].osRelease();
    const w = text ? debianWarning(text, `the ${side} host ${plan[side].host}`) : undefined;
    if (w) warnings.push(w);
  }

  const [deployed, commit] = await Promise.all([ctx.hosts.old.chatmailVersion(), checkoutCommit(ctx.relayDir)]);
  const versionWarning = chatmailVersionWarning(deployed, commit, `the old host ${plan.old.host}`);
  if (versionWarning) warnings.push(versionWarning);
  else if (deployed !== undefined) note(`the old host was deployed from the checkout's commit ${commit?.slice(0, 12)}`);

  const [source, present, disk] = await Promise.all([ctx.hosts.old.treeSize(), ctx.hosts.new.treeSize(), ctx.hosts.new.freeDisk()]);
  const needed = Math.max(0, source.bytes - present.bytes);
  if (needed > disk.freeBytes) {
    throw new CmError(
      'precondition.disk_space',
      `the new host ${plan.new.host} has ${formatBytes(disk.freeBytes)} free at ${disk.path}, but the relay's state on the old host is ${formatBytes(source.bytes)} (${source.files} files, hard links counted once)${present.bytes > 0 ? `, of which ${formatBytes(present.bytes)} are already there` : ''}`,
      { hint: `free ${formatBytes(needed - disk.freeBytes)} or more on ${plan.new.host} (or give it a bigger disk), then run ${ctx.rerun}` },
    );
  }
  note(`disk: ${formatBytes(source.bytes)} to carry (${source.files} files), ${formatBytes(disk.freeBytes)} free on the new host at ${disk.path}`);

  try {
    const { zone, servers } = await nameServers(plan);
    const answers = await queryRecords(plan.mailDomain, servers);
    warnings.push(...ttlWarnings(answers, plan.mailDomain));
    note(`DNS: ${zone ? `zone ${zone}, ` : ''}authoritative servers ${servers.map(serverLabel).join(', ')}`);
  } catch (err) {
    const e = err instanceof CmError ? err : new CmError('dns.lookup_failed', String(err));
    warnings.push(`cannot check the TTL of ${plan.mailDomain}: ${e.message} (step 5 needs the authoritative servers: list them as dns.servers in the plan, or use --skip-dns-wait)`);
  }

  try {
    const dk = await dnsKeyProblems(ctx, 'old');
    for (const n of dk.notes) note(n);
    warnings.push(...dk.problems);
  } catch (err) {
    warnings.push(`cannot check the DKIM and CAA records of ${plan.mailDomain}: ${(err as Error).message}`);
  }

  const endpoint = plan.checks.oldTls ?? formatHostPort(plan.old.host, 993);
  try {
    const cert = await fetchCertificate(endpoint, plan.mailDomain, { timeoutMs: 10_000 });
    const w = expiryWarning(cert, `the old host's certificate for ${plan.mailDomain} (on ${endpoint})`);
    if (w) warnings.push(w);
    else note(`the old host's certificate for ${plan.mailDomain} is valid for ${cert.daysLeft} more days`);
  } catch (err) {
    warnings.push(`cannot read the old host's certificate on ${endpoint}: ${(err as Error).message}`);
  }
  return warnings;
}
