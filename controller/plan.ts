/**
 * The plan file: one TOML file per migration that a person reads and edits. It names the
 * mail domain, both hosts with their agents' addresses, and the owners forced on each
 * copied tree. `loadPlan` accepts only what `renderPlan` can write: an unknown key, a
 * wrong type or an unusable value is a CmError that names the key and the file. The
 * schema itself is in plan-schema.ts.
 */
import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { CmError, DEFAULT_AGENT_PORT, DEFAULT_MAILBOXES_DIR, DEFAULT_OWNER_RULES, formatHostPort, parseHostPort, type OwnerRule } from '../proto';
import { MAIL_PORT_KEYS, OWNER_RE, OWNER_ROOTS, planSchema, problemsOf, renderPlanBody, type MailPortKey, type OwnerRoot } from './plan-schema';

export { MAIL_PORT_KEYS, OWNER_ROOTS, type MailPortKey, type OwnerRoot };

/** An owner forced on a root, by name. */
export interface Owner {
  user: string;
  group: string;
}
export type Owners = Partial<Record<OwnerRoot, Owner>>;

/** The owners the relay project's manual procedure forces with its chown lines. */
export const DEFAULT_OWNERS: Owners = DEFAULT_OWNER_RULES;
export { DEFAULT_MAILBOXES_DIR };
export const DEFAULT_STATE_DIR = '.cmmigrate';

export interface HostPlan {
  /** The relay host: an IP address (IPv6 without brackets) or a name. */
  host: string;
  agentHost: string;
  agentPort: number;
  /** `host:port` of the agent, IPv6 as `[::1]:7826`. */
  agent: string;
  /** ssh destination, `root@host` unless the plan says otherwise. */
  ssh: string;
}

/** Where the run's checks reach the hosts' services; defaults are the hosts' own ports. */
export interface ChecksPlan {
  /** `host:port` where the old host answers IMAPS, for the certificate expiry check. */
  oldTls?: string;
  /** `host:port` per mail port of the new host, for the checks after step 6. */
  newPorts: Partial<Record<MailPortKey, string>>;
  /** Absolute path of extra trust anchors (PEM) for the certificate checks. */
  caFile?: string;
}

export interface Plan {
  /** Absolute path of the plan file. */
  file: string;
  /** Its directory. */
  dir: string;
  mailDomain: string;
  /** Absolute; `state_dir` of the file resolved against `dir`. */
  stateDir: string;
  /** `<stateDir>/tls`. */
  tlsDir: string;
  old: HostPlan;
  new: HostPlan;
  mailboxesDir: string;
  /** Forced owner per root. Without an `[owners]` table: DEFAULT_OWNERS. */
  owners: Owners;
  /** Absolute path of the operator's chatmail/relay checkout, if the plan names one. */
  relayDir?: string;
  /** The new host's public addresses: what A and AAAA of mail_domain must show after step 5. */
  newAddresses: { ipv4: string[]; ipv6: string[] };
  /** The zone's authoritative servers as `ip[:port]`, if the plan lists them (else found by NS look-up). */
  dnsServers: string[];
  checks: ChecksPlan;
  /** The bridge of `run --bridge` (issue 14), when the plan has a bridge key: on by `bridge = true`; where it listens and which ports. */
  bridge?: { enabled: boolean; listen?: string[]; ports?: number[] };
}

/** What `renderPlan` needs; a loaded Plan fits too. Omitted fields get the defaults. */
export interface PlanInput {
  mailDomain: string;
  /** Written as given; relative paths are taken from the plan file's directory. */
  stateDir?: string;
  old: { host: string; agent?: string; ssh?: string };
  new: { host: string; agent?: string; ssh?: string; ipv4?: string; ipv6?: string };
  mailboxesDir?: string;
  owners?: Owners;
  relayDir?: string;
}

// ---------------------------------------------------------------------------------------
// Addresses

export { hostProblem, formatHostPort, parseHostPort, DEFAULT_AGENT_PORT } from '../proto';

// ---------------------------------------------------------------------------------------
// Loading

/** Reads, parses and validates a plan file. */
export async function loadPlan(file: string): Promise<Plan> {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = await fsp.readFile(abs, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') {
      throw new CmError('plan.not_found', `plan file ${abs} does not exist`, {
        hint: `make one with: cmmigrate init --plan ${file} --domain MAIL_DOMAIN --old OLD_HOST --new NEW_HOST`,
        cause: err,
      });
    }
    throw new CmError('plan.unreadable', `cannot read plan file ${abs}: ${e.message}`, {
      hint: 'check the path given with --plan and its permissions',
      cause: err,
    });
  }

  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    if (err instanceof TomlError) {
      const first = err.message.split('\n')[0].replace(/^Invalid TOML document: /, '');
      throw new CmError('plan.syntax', `plan file ${abs}, line ${err.line}, column ${err.column}: ${first}`, {
        hint: `fix the TOML syntax on line ${err.line} of ${abs}`,
        details: { file: abs, line: err.line, column: err.column },
        cause: err,
      });
    }
    throw err;
  }

  const parsed = planSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = problemsOf(parsed.error.issues, raw);
    const unknown = problems.filter((p) => p.unknown);
    const code = unknown.length > 0 ? 'plan.unknown_key' : 'plan.invalid';
    throw new CmError(code, `plan file ${abs}: ${problems.map((p) => p.text).join('; ')}`, {
      hint:
        unknown.length > 0
          ? `remove or rename ${unknown.map((p) => p.key).join(', ')} in ${abs}`
          : `correct ${problems.map((p) => p.key).join(', ')} in ${abs}`,
      details: { file: abs, keys: problems.map((p) => p.key) },
    });
  }

  const p = parsed.data;
  const dir = path.dirname(abs);
  const stateDir = path.resolve(dir, p.state_dir ?? DEFAULT_STATE_DIR);
  const owners: Owners = {};
  if (p.owners) {
    for (const root of OWNER_ROOTS) {
      const v = p.owners[root];
      const m = v === undefined ? null : OWNER_RE.exec(v);
      if (m) owners[root] = { user: m[1], group: m[2] };
    }
  }
  return {
    file: abs,
    dir,
    mailDomain: p.mail_domain,
    stateDir,
    tlsDir: path.join(stateDir, 'tls'),
    old: hostPlan(p.old),
    new: hostPlan(p.new),
    mailboxesDir: p.relay?.mailboxes_dir ?? DEFAULT_MAILBOXES_DIR,
    owners: p.owners ? owners : { ...DEFAULT_OWNERS },
    relayDir: p.relay_dir === undefined ? undefined : path.resolve(dir, p.relay_dir),
    newAddresses: newAddresses(p.new),
    dnsServers: p.dns?.servers ?? [],
    checks: {
      oldTls: p.checks?.old_tls,
      newPorts: { ...(p.checks?.new_ports ?? {}) },
      caFile: p.checks?.ca_file === undefined ? undefined : path.resolve(dir, p.checks.ca_file),
    },
    ...(p.bridge !== undefined || p.bridge_listen !== undefined || p.bridge_ports !== undefined
      ? { bridge: { enabled: p.bridge === true, listen: p.bridge_listen, ports: p.bridge_ports } }
      : {}),
  };
}

/** The plan's forced owners as the wire's owner rules (Pull and Verify requests). */
export function ownerRules(plan: Plan): OwnerRule[] {
  return Object.entries(plan.owners).map(([root, o]) => ({ root, user: o!.user, group: o!.group }));
}

/** The new host's addresses: as the plan lists them, else its host when that is an IP address. */
function newAddresses(t: { host: string; ipv4?: string; ipv6?: string }): { ipv4: string[]; ipv6: string[] } {
  return {
    ipv4: t.ipv4 !== undefined ? [t.ipv4] : net.isIPv4(t.host) ? [t.host] : [],
    ipv6: t.ipv6 !== undefined ? [t.ipv6] : net.isIPv6(t.host) ? [t.host] : [],
  };
}

function hostPlan(t: { host: string; agent?: string; ssh?: string }): HostPlan {
  const a = parseHostPort(t.agent ?? t.host, DEFAULT_AGENT_PORT);
  return {
    host: t.host,
    agentHost: a.host,
    agentPort: a.port,
    agent: formatHostPort(a.host, a.port),
    ssh: t.ssh ?? `root@${t.host}`,
  };
}

// ---------------------------------------------------------------------------------------
// Rendering

/** Text made safe for a comment line. */
function inComment(s: string): string {
  return s.replace(/[\x00-\x1f\x7f]/g, '?');
}

/** The plan as TOML, with comments that explain each section to the person editing it (from the schema, plan-schema.ts). */
export function renderPlan(p: PlanInput): string {
  const side = (h: PlanInput['old']) => ({ ...h, agent: h.agent ?? formatHostPort(h.host, DEFAULT_AGENT_PORT), ssh: h.ssh ?? `root@${h.host}` });
  const owners = p.owners ?? DEFAULT_OWNERS;
  const lines = [
    `# cmmigrate plan: move the chatmail relay for ${inComment(p.mailDomain)}`,
    `# from ${inComment(p.old.host)} (old) to ${inComment(p.new.host)} (new).`,
    `#`,
    `# Written by \`cmmigrate init\`; edit it as you need. Every cmmigrate command reads this`,
    `# file and refuses keys it does not know. Next: cmmigrate install-agent old|new --plan THIS_FILE`,
    ``,
    ...renderPlanBody({
      mail_domain: p.mailDomain,
      state_dir: p.stateDir ?? DEFAULT_STATE_DIR,
      relay_dir: p.relayDir,
      old: side(p.old),
      new: side(p.new),
      relay: { mailboxes_dir: p.mailboxesDir ?? DEFAULT_MAILBOXES_DIR },
      owners: Object.fromEntries(OWNER_ROOTS.flatMap((r) => (owners[r] ? [[r, `${owners[r].user}:${owners[r].group}`]] : []))),
    }),
  ];
  return lines.join('\n') + '\n';
}
