/**
 * The plan file: one TOML file per migration that a person reads and edits. It names the
 * mail domain, both hosts with their agents' addresses, and the owners forced on each
 * copied tree. `loadPlan` accepts only what `renderPlan` can write: an unknown key, a
 * wrong type or an unusable value is a CmError that names the key and the file.
 */
import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { z } from 'zod';
import { CmError, DEFAULT_AGENT_PORT, DEFAULT_MAILBOXES_DIR, DEFAULT_OWNER_RULES, formatHostPort, hostProblem, parseHostPort, ROOT_NAMES, type OwnerRule, type RootName } from '../proto';

/** Every root the `[owners]` table may name: the agents' allowlist. */
export const OWNER_ROOTS = ROOT_NAMES;
export type OwnerRoot = RootName;
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

export type MailPortKey = '25' | '465' | '587' | '993' | '443';
export const MAIL_PORT_KEYS: readonly MailPortKey[] = ['25', '465', '587', '993', '443'];

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
// Schema

const NAME = '[A-Za-z_][A-Za-z0-9_.-]{0,30}\\$?';
const OWNER_RE = new RegExp(`^(${NAME}):(${NAME})$`);

/** A zod string that must pass `check` (which returns why not, or undefined). */
function checked(check: (s: string) => string | undefined) {
  return z.string().superRefine((s, ctx) => {
    const why = check(s);
    if (why) ctx.addIssue({ code: 'custom', message: why });
  });
}

const hostValue = checked((s) => {
  const why = hostProblem(s);
  return why && `must be an IP address or host name, but ${why} (got ${JSON.stringify(s)})`;
});
const agentValue = checked((s) => {
  try {
    parseHostPort(s, DEFAULT_AGENT_PORT);
    return undefined;
  } catch (err) {
    return `must be "host:port" with a port from 1 to 65535 (got ${JSON.stringify(s)}): ${(err as Error).message.replace(/^.*?: /, '')}`;
  }
});
const sshValue = checked((s) =>
  s === '' || /[\s\x00-\x1f\x7f]/.test(s) || s.startsWith('-')
    ? `must be an ssh destination such as "root@127.0.0.2" (got ${JSON.stringify(s)})`
    : undefined,
);
const dirValue = checked((s) =>
  !s.startsWith('/') || path.posix.normalize(s) !== s || s === '/' || s.endsWith('/')
    ? `must be an absolute, normalized directory other than "/", such as "${DEFAULT_MAILBOXES_DIR}" (got ${JSON.stringify(s)})`
    : undefined,
);
const ownerValue = checked((s) =>
  OWNER_RE.test(s) ? undefined : `must be "user:group", such as "vmail:vmail" (got ${JSON.stringify(s)})`,
);
const domainValue = checked((s) => {
  const why = hostProblem(s);
  return why && `must be the relay's mail domain, such as "mail.example.org", but ${why} (got ${JSON.stringify(s)})`;
});
const stateDirValue = checked((s) =>
  s === '' || s.includes('\0') ? `must be a directory path (got ${JSON.stringify(s)})` : undefined,
);

/** The [old] or [new] table; `example` is the host used in the shapes of its keys. */
function hostTable(name: 'old' | 'new', example: string) {
  return z.strictObject({
    host: hostValue.describe(`a string such as "${example}"`),
    agent: agentValue.describe(`a string "host:port" such as "${example}:${DEFAULT_AGENT_PORT}"`).optional(),
    ssh: sshValue.describe(`a string such as "root@${example}"`).optional(),
  }).describe(`a table [${name}] with host, agent and ssh`);
}
const ipv4Value = checked((s) => (net.isIPv4(s) ? undefined : `must be an IPv4 address such as "198.51.100.7" (got ${JSON.stringify(s)})`));
const ipv6Value = checked((s) => (net.isIPv6(s) ? undefined : `must be an IPv6 address such as "2001:db8::7" (got ${JSON.stringify(s)})`));
const newHostTable = hostTable('new', '127.0.0.3')
  .extend({ ipv4: ipv4Value.describe('a string such as "198.51.100.7"').optional(), ipv6: ipv6Value.describe('a string such as "2001:db8::7"').optional() })
  .describe('a table [new] with host, agent and ssh');
const endpointValue = checked((s) => {
  try {
    parseHostPort(s, undefined);
    return undefined;
  } catch {
    return `must be "host:port" such as "198.51.100.7:993" (got ${JSON.stringify(s)})`;
  }
});
const pathValue = checked((s) => (s === '' || s.includes('\0') ? `must be a path (got ${JSON.stringify(s)})` : undefined));
const nameServerValue = checked((s) => {
  try {
    const { host } = parseHostPort(s, 53);
    return net.isIP(host) ? undefined : `must be an IP address with an optional port, such as "192.0.2.53" or "[2001:db8::53]:53" (got ${JSON.stringify(s)})`;
  } catch {
    return `must be an IP address with an optional port, such as "192.0.2.53" or "[2001:db8::53]:53" (got ${JSON.stringify(s)})`;
  }
});

/**
 * The plan file's one statement: its keys, their values, and (in `describe`) what a key
 * must hold, which type errors quote. The "did you mean" hints take the keys from here.
 */
const planSchema = z
  .strictObject({
    mail_domain: domainValue.describe('a string such as "mail.example.org"'),
    state_dir: stateDirValue.describe('a string such as ".cmmigrate"').optional(),
    relay_dir: pathValue.describe('a string: the path of your chatmail/relay checkout').optional(),
    old: hostTable('old', '127.0.0.2'),
    new: newHostTable,
    relay: z.strictObject({ mailboxes_dir: dirValue.describe(`a string such as "${DEFAULT_MAILBOXES_DIR}"`).optional() }).describe('a table [relay]').optional(),
    dns: z
      .strictObject({ servers: z.array(nameServerValue).describe('an array of strings such as ["192.0.2.53", "[2001:db8::53]:53"]').optional() })
      .describe('a table [dns]')
      .optional(),
    checks: z
      .strictObject({
        old_tls: endpointValue.describe('a string "host:port" such as "203.0.113.5:993"').optional(),
        ca_file: pathValue.describe('a string: the path of a PEM file').optional(),
        new_ports: z
          .strictObject(Object.fromEntries(MAIL_PORT_KEYS.map((k) => [k, endpointValue.optional()])) as Record<MailPortKey, z.ZodOptional<typeof endpointValue>>)
          .describe('a table [checks.new_ports] such as 993 = "198.51.100.7:993"')
          .optional(),
      })
      .describe('a table [checks]')
      .optional(),
    owners: z
      .strictObject(Object.fromEntries(OWNER_ROOTS.map((r) => [r, ownerValue.describe('a string "user:group" such as "vmail:vmail"').optional()])) as Record<OwnerRoot, z.ZodOptional<typeof ownerValue>>)
      .describe('a table [owners]')
      .optional(),
  })
  .superRefine((p, ctx) => {
    let a: { host: string; port: number };
    let b: { host: string; port: number };
    try {
      a = parseHostPort(p.old.agent ?? p.old.host, DEFAULT_AGENT_PORT);
      b = parseHostPort(p.new.agent ?? p.new.host, DEFAULT_AGENT_PORT);
    } catch {
      return; // already reported on the key itself
    }
    if (a.host === b.host && a.port === b.port) {
      ctx.addIssue({
        code: 'custom',
        path: ['new', 'agent'],
        message: `is ${formatHostPort(b.host, b.port)}, the same address as old.agent: the two agents must differ`,
      });
    }
  });

/** The schema of the key at `keys` (optional unwrapped), or undefined where the schema has none. */
function schemaAt(keys: readonly PropertyKey[]): z.ZodType | undefined {
  let t: z.ZodType | undefined = planSchema;
  for (const k of keys) {
    const inner: z.ZodType | undefined = t instanceof z.ZodOptional ? (t.unwrap() as z.ZodType) : t;
    t = inner instanceof z.ZodObject ? (inner.shape as Record<PropertyKey, z.ZodType>)[k] : undefined;
    if (!t) return undefined;
  }
  return t instanceof z.ZodOptional ? (t.unwrap() as z.ZodType) : t;
}

/** What the key at `keys` must hold, for type errors (its `describe` in the schema). */
function shapeOf(keys: readonly PropertyKey[]): string | undefined {
  return schemaAt(keys)?.description;
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'an array';
  if (v === null || typeof v !== 'object') return `${typeof v === 'number' ? (Number.isInteger(v) ? 'integer' : 'float') : typeof v} ${JSON.stringify(v)}`;
  if (v instanceof Date) return 'a date';
  return 'a table';
}

function valueAt(root: unknown, keys: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const k of keys) v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

/** Keys of a table in the schema, for "did you mean" hints. */
function knownKeys(table: string): string[] {
  const t = schemaAt(table === '' ? [] : table.split('.'));
  return t instanceof z.ZodObject ? Object.keys(t.shape) : [];
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length];
}

interface Problem {
  key: string;
  text: string;
  unknown: boolean;
  suggestion?: string;
}

function problemsOf(issues: readonly z.core.$ZodIssue[], raw: unknown): Problem[] {
  const out: Problem[] = [];
  for (const issue of issues) {
    const at = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) {
        const key = at ? `${at}.${k}` : k;
        const near = knownKeys(at)
          .map((c) => ({ c, d: editDistance(k, c) }))
          .filter((x) => x.d <= 2)
          .sort((x, y) => x.d - y.d)[0];
        out.push({
          key,
          unknown: true,
          text: `unknown key ${key}${near ? ` (did you mean ${at ? `${at}.` : ''}${near.c}?)` : ''}`,
          suggestion: near?.c,
        });
      }
    } else if (issue.code === 'invalid_type') {
      const got = valueAt(raw, issue.path);
      const want = shapeOf(issue.path) ?? `a ${issue.expected}`;
      out.push({
        key: at,
        unknown: false,
        text: got === undefined ? `${at} is missing: it must be ${want}` : `${at} must be ${want}, not ${describeValue(got)}`,
      });
    } else {
      out.push({ key: at, unknown: false, text: `${at} ${issue.message}` });
    }
  }
  return out;
}

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

/** A TOML basic string. */
function str(s: string): string {
  // JSON escapes are valid TOML escapes; TOML also forbids a raw DEL.
  return JSON.stringify(s).replace(/\x7f/g, '\\u007F');
}

/** Text made safe for a comment line. */
function inComment(s: string): string {
  return s.replace(/[\x00-\x1f\x7f]/g, '?');
}

/** The plan as TOML, with comments that explain each section to the person editing it. */
export function renderPlan(p: PlanInput): string {
  const side = (name: 'old' | 'new', h: PlanInput['old'], example: string): string[] => [
    `[${name}]`,
    `# The relay host: an IP address (IPv6 without brackets) or a host name.`,
    `host = ${str(h.host)}`,
    `# Where its cmmigrate-agent listens, as host:port (IPv6 as "[2001:db8::2]:${DEFAULT_AGENT_PORT}").`,
    `# The agent's TLS certificate names this host and the one above.`,
    `agent = ${str(h.agent ?? formatHostPort(h.host, DEFAULT_AGENT_PORT))}`,
    `# How the controller reaches it over ssh, as root (e.g. "${example}").`,
    `ssh = ${str(h.ssh ?? `root@${h.host}`)}`,
  ];
  const owners = p.owners ?? DEFAULT_OWNERS;
  const lines = [
    `# cmmigrate plan: move the chatmail relay for ${inComment(p.mailDomain)}`,
    `# from ${inComment(p.old.host)} (old) to ${inComment(p.new.host)} (new).`,
    `#`,
    `# Written by \`cmmigrate init\`; edit it as you need. Every cmmigrate command reads this`,
    `# file and refuses keys it does not know. Next: cmmigrate install-agent old|new --plan THIS_FILE`,
    ``,
    `# The relay's mail_domain, as in its chatmail.ini.`,
    `mail_domain = ${str(p.mailDomain)}`,
    `# Where cmmigrate keeps this migration's TLS material and journal.`,
    `# A relative path is taken from this file's directory.`,
    `state_dir = ${str(p.stateDir ?? DEFAULT_STATE_DIR)}`,
    `# Your checkout of chatmail/relay, the one you deploy this relay with: \`cmmigrate run\``,
    `# runs its scripts/cmdeploy (from this directory, with its chatmail.ini).`,
    p.relayDir === undefined ? `# relay_dir = "/home/you/relay"` : `relay_dir = ${str(p.relayDir)}`,
    ``,
    `# The host the relay runs on now. Its state is copied from here; at the end its mail`,
    `# service is off.`,
    ...side('old', p.old, 'root@127.0.0.2'),
    ``,
    `# The host the relay moves to. It stays inactive until the last step.`,
    ...side('new', p.new, 'root@127.0.0.3'),
    `# Its public addresses: step 5 waits until the A and AAAA records of mail_domain show`,
    `# exactly these. Without ipv6 the AAAA record must go. Default: host, when it is an IP address.`,
    p.new.ipv4 === undefined ? `# ipv4 = "198.51.100.7"` : `ipv4 = ${str(p.new.ipv4)}`,
    p.new.ipv6 === undefined ? `# ipv6 = "2001:db8::7"` : `ipv6 = ${str(p.new.ipv6)}`,
    ``,
    `# The zone's authoritative name servers, which step 5 asks for A and AAAA. Without this`,
    `# table they are found by an NS look-up through this machine's resolver.`,
    `# [dns]`,
    `# servers = ["192.0.2.53", "[2001:db8::53]:53"]`,
    ``,
    `# Where the checks reach the hosts' mail services, when not at the hosts' own ports`,
    `# (NAT, a firewall in between). old_tls: the old host's IMAPS, for the certificate expiry`,
    `# check before step 1; new_ports: the new host's ports, checked after step 6.`,
    `# [checks]`,
    `# old_tls = "203.0.113.5:993"`,
    `# ca_file = "relay-ca.pem"     # extra trust anchors (PEM), for a relay with its own CA`,
    `# [checks.new_ports]`,
    `# 993 = "198.51.100.7:993"`,
    ``,
    `[relay]`,
    `# Where the mailboxes live: the mailboxes_dir of chatmail.ini.`,
    `mailboxes_dir = ${str(p.mailboxesDir ?? DEFAULT_MAILBOXES_DIR)}`,
    ``,
    `# The owner ("user:group", by name) forced on each copied tree on the new host, as the`,
    `# manual procedure's chown lines do. Roots: ${OWNER_ROOTS.slice(0, 5).join(', ')},`,
    `# ${OWNER_ROOTS.slice(5).join(', ')}. A root not listed keeps the owners its files have on`,
    `# the old host; without this table the procedure's defaults apply.`,
    `[owners]`,
    ...OWNER_ROOTS.flatMap((r) => {
      const o = owners[r];
      return o ? [`${r} = ${str(`${o.user}:${o.group}`)}`] : [];
    }),
  ];
  return lines.join('\n') + '\n';
}
