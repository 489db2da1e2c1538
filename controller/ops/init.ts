/**
 * Init, for `cmmigrate init`: writes the plan file and this migration's TLS material (CA, controller
 * and agent certificates) beside it. A rerun with the same arguments changes nothing; a
 * plan that the operator edited is kept; `--force` replaces the plan and makes a new CA.
 */
import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { CmError } from '../../proto/errors';
import {
  DEFAULT_AGENT_PORT,
  formatHostPort,
  hostProblem,
  loadPlan,
  parseHostPort,
  renderPlan,
  type Plan,
  type PlanInput,
} from '../plan';
import { writeFileAtomicSync } from '../atomic-file';
import { readChatmailIni } from '../relay/chatmail-ini';
import { relayPortConflict } from '../relay/upstream';
import { ensurePki, leafDir } from '../pki';

export interface InitOptions {
  plan: string;
  /** Required unless relayDir has a chatmail.ini, which then must agree. */
  domain?: string;
  old: string;
  new: string;
  oldAgent?: string;
  newAgent?: string;
  oldSsh?: string;
  newSsh?: string;
  newIpv4?: string;
  newIpv6?: string;
  relayDir?: string;
  force?: boolean;
}

export interface InitResult {
  /** Absolute path of the plan file. */
  planFile: string;
  tlsDir: string;
  caCreated: boolean;
  /** False when an existing plan was kept as it was. */
  planWritten: boolean;
  /** What init did, one line each, for printing. */
  lines: string[];
}

function badOption(flag: string, value: string, why: string): CmError {
  return new CmError('usage.bad_option', `${flag} ${JSON.stringify(value)} is unusable: ${why}`, {
    hint: 'example: cmmigrate init --plan plan.toml --domain mail.example.org --old 203.0.113.5 --new 198.51.100.7',
  });
}

/** A host flag: an IP address (IPv6 with or without brackets) or a DNS name. */
function hostOption(flag: string, value: string): string {
  const host = value.replace(/^\[(.*)\]$/, '$1');
  const why = hostProblem(host);
  if (why) throw badOption(flag, value, why);
  return host;
}

/** Which keys of an existing plan name another migration than these options. */
function conflicts(cur: Plan, want: PlanInput, opts: InitOptions): string[] {
  const out: string[] = [];
  const same = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();
  const diff = (key: string, have: string, wanted: string): void => {
    if (!same(have, wanted)) out.push(`${key} is ${JSON.stringify(have)}, not ${JSON.stringify(wanted)}`);
  };
  diff('mail_domain', cur.mailDomain, want.mailDomain);
  diff('old.host', cur.old.host, want.old.host);
  diff('new.host', cur.new.host, want.new.host);
  // An agent address the operator edited is no conflict unless the flag asks for another.
  if (opts.oldAgent !== undefined) diff('old.agent', cur.old.agent, want.old.agent ?? '');
  if (opts.newAgent !== undefined) diff('new.agent', cur.new.agent, want.new.agent ?? '');
  if (opts.oldSsh !== undefined) diff('old.ssh', cur.old.ssh, want.old.ssh ?? '');
  if (opts.newSsh !== undefined) diff('new.ssh', cur.new.ssh, want.new.ssh ?? '');
  if (opts.relayDir !== undefined) diff('relay_dir', cur.relayDir ?? '', want.relayDir ?? '');
  if (opts.newIpv4 !== undefined) diff('new.ipv4', cur.newAddresses.ipv4.join(','), want.new.ipv4 ?? '');
  if (opts.newIpv6 !== undefined) diff('new.ipv6', cur.newAddresses.ipv6.join(','), want.new.ipv6 ?? '');
  if (want.mailboxesDir !== undefined) diff('relay.mailboxes_dir', cur.mailboxesDir, want.mailboxesDir);
  return out;
}

/** The plan the options ask for, checked against each other and against the checkout's chatmail.ini. */
async function wantedPlan(opts: InitOptions): Promise<PlanInput> {
  const relayDir = opts.relayDir === undefined ? undefined : path.resolve(opts.relayDir);
  const ini = relayDir === undefined ? undefined : await readChatmailIni(relayDir);
  if (relayDir !== undefined) {
    const st = await fsp.stat(relayDir).catch(() => undefined);
    if (!st?.isDirectory()) throw badOption('--relay-dir', opts.relayDir!, 'it is not a directory');
  }
  if (ini && opts.domain !== undefined && ini.mailDomain.toLowerCase() !== opts.domain.toLowerCase()) {
    throw new CmError('usage.bad_option', `--domain ${opts.domain} disagrees with ${ini.file}, which says mail_domain = ${ini.mailDomain}`, {
      hint: `give the relay's own mail_domain (--domain ${ini.mailDomain}), or the checkout the relay is deployed from as --relay-dir`,
    });
  }
  const domain = opts.domain ?? ini?.mailDomain;
  if (domain === undefined) {
    throw new CmError('usage.missing_option', 'the mail domain is unknown: give --domain, or --relay-dir with a checkout whose chatmail.ini names mail_domain', {
      hint: 'example: cmmigrate init --plan plan.toml --domain mail.example.org --old 203.0.113.5 --new 198.51.100.7',
    });
  }
  const domainProblem = hostProblem(domain);
  if (domainProblem) throw badOption('--domain', domain, domainProblem);
  const ipOption = (flag: string, v: string | undefined, family: 4 | 6): string | undefined => {
    if (v === undefined) return undefined;
    const bare = v.replace(/^\[(.*)\]$/, '$1');
    if (net.isIP(bare) !== family) throw badOption(flag, v, `it is not an IPv${family} address`);
    return bare;
  };
  const newIpv4 = ipOption('--new-ipv4', opts.newIpv4, 4);
  const newIpv6 = ipOption('--new-ipv6', opts.newIpv6, 6);
  const sshOption = (flag: string, v: string | undefined): string | undefined => {
    if (v !== undefined && (v === '' || /[\s\x00-\x1f\x7f]/.test(v) || v.startsWith('-'))) throw badOption(flag, v, 'it is not an ssh destination such as root@203.0.113.5');
    return v;
  };
  const oldSsh = sshOption('--old-ssh', opts.oldSsh);
  const newSsh = sshOption('--new-ssh', opts.newSsh);
  const oldHost = hostOption('--old', opts.old);
  const newHost = hostOption('--new', opts.new);
  const oldAgent = parseHostPort(opts.oldAgent ?? oldHost, DEFAULT_AGENT_PORT, opts.oldAgent ? '--old-agent' : '--old');
  const newAgent = parseHostPort(opts.newAgent ?? newHost, DEFAULT_AGENT_PORT, opts.newAgent ? '--new-agent' : '--new');
  for (const [flag, a] of [[opts.oldAgent ? '--old-agent' : '--old', oldAgent], [opts.newAgent ? '--new-agent' : '--new', newAgent]] as const) {
    const why = relayPortConflict(a.port, ini?.params);
    if (why) throw badOption(flag, formatHostPort(a.host, a.port), why);
  }
  if (oldAgent.host === newAgent.host && oldAgent.port === newAgent.port) {
    throw new CmError('usage.bad_option', `the old and the new agent would both listen on ${formatHostPort(oldAgent.host, oldAgent.port)}`, {
      hint: 'give two different hosts with --old and --new, or different ports with --old-agent and --new-agent',
    });
  }

  const want: PlanInput = {
    mailDomain: domain,
    relayDir,
    old: { host: oldHost, agent: formatHostPort(oldAgent.host, oldAgent.port), ssh: oldSsh ?? `root@${oldHost}` },
    new: { host: newHost, agent: formatHostPort(newAgent.host, newAgent.port), ssh: newSsh ?? `root@${newHost}`, ipv4: newIpv4, ipv6: newIpv6 },
    mailboxesDir: ini?.planMailboxesDir,
  };
  return want;
}

/** Writes the plan unless the file holds it already or holds the operator's edits (kept unless they conflict). Whether it wrote. */
async function writePlan(planFile: string, want: PlanInput, opts: InitOptions, lines: string[]): Promise<boolean> {
  const text = renderPlan(want);
  let existing: string | undefined;
  try {
    existing = await fsp.readFile(planFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new CmError('plan.unreadable', `cannot read plan file ${planFile}: ${(err as Error).message}`, { cause: err });
    }
  }

  let planWritten = false;
  if (existing === undefined || (existing !== text && opts.force)) {
    await fsp.mkdir(path.dirname(planFile), { recursive: true });
    writeFileAtomicSync(planFile, text, 0o644);
    planWritten = true;
    lines.push(existing === undefined ? `wrote plan ${planFile}` : `replaced plan ${planFile} (--force)`);
  } else if (existing === text) {
    lines.push(`plan ${planFile} is up to date`);
  } else {
    let cur: Plan;
    try {
      cur = await loadPlan(planFile);
    } catch (err) {
      if (!(err instanceof CmError)) throw err;
      throw new CmError(err.code, err.message, {
        hint: `${err.hint ?? `fix ${planFile}`}, or run the same init command with --force to replace the file`,
        details: err.details,
        cause: err,
      });
    }
    const diffs = conflicts(cur, want, opts);
    if (diffs.length > 0) {
      throw new CmError('plan.exists', `plan ${planFile} already exists with other settings: ${diffs.join('; ')}`, {
        hint: `run the same init command with --force to replace it (and make a new CA), or edit ${planFile}`,
        details: { file: planFile },
      });
    }
    lines.push(`kept plan ${planFile} (it has changes of yours; --force rewrites it)`);
  }
  return planWritten;
}

/** Makes sure the CA and the controller's and agents' material beside the plan are current. */
async function ensureMaterial(planFile: string, opts: InitOptions, lines: string[]): Promise<{ tlsDir: string; created: boolean }> {
  const plan = await loadPlan(planFile);
  const pki = await ensurePki(
    plan.tlsDir,
    plan.mailDomain,
    { old: [plan.old.host, plan.old.agentHost], new: [plan.new.host, plan.new.agentHost] },
    { force: opts.force },
  );
  lines.push(
    pki.created
      ? `created CA ${pki.caId} in ${path.join(pki.tlsDir, 'ca')}`
      : `kept existing CA ${pki.caId} in ${path.join(pki.tlsDir, 'ca')} (use --force for a new one)`,
  );
  const ctlState = pki.issued.includes('controller') ? (pki.created ? '' : ' (reissued)') : ' (unchanged)';
  lines.push(`controller material: ${leafDir(pki.tlsDir, 'controller')}${ctlState}`);
  for (const side of ['old', 'new'] as const) {
    const dir = leafDir(pki.tlsDir, side);
    const changed = pki.issued.includes(side);
    const state = !changed ? 'unchanged, ' : pki.created ? '' : 'reissued, ';
    lines.push(
      `agent material for ${side}: ${dir} (${state}for ${pki.sans[side].join(', ')}; ` +
        `cmmigrate install-agent ${side} installs it with the agent, listening on ${plan[side].agent})`,
    );
  }
  lines.push(`next: cmmigrate install-agent old --plan ${planFile}; cmmigrate install-agent new --plan ${planFile}`);
  if (!plan.relayDir) lines.push(`before cmmigrate run: add relay_dir (your chatmail/relay checkout) to ${planFile}, or run init again with --relay-dir`);
  else lines.push(`then: cmmigrate run --plan ${planFile} --dry-run`);
  return { tlsDir: pki.tlsDir, created: pki.created };
}

/** Writes (or keeps) the plan, then makes sure the TLS material beside it is current. */
export async function runInit(opts: InitOptions): Promise<InitResult> {
  const planFile = path.resolve(opts.plan);
  const lines: string[] = [];
  const planWritten = await writePlan(planFile, await wantedPlan(opts), opts, lines);
  const pki = await ensureMaterial(planFile, opts, lines);
  return { planFile, tlsDir: pki.tlsDir, caCreated: pki.created, planWritten, lines };
}

/** The `init` command: parses options and calls runInit. Errors propagate as CmError. */
