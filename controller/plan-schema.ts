/**
 * The plan file's schema, stated once: every key in the order a new plan file lists it,
 * what its value must be, (with `describe`) the shape that type errors quote, and (with
 * `documented`) the comment and example a new plan file writes for it; the problems of a
 * file that does not fit it, each naming the key (with "did you mean" for a key it does not
 * know, taken from the schema's own keys); and the TOML of a new plan file's keys.
 * controller/plan.ts loads and renders plans with it.
 */
import * as net from 'node:net';
import * as path from 'node:path';
import { z } from 'zod';
import { DEFAULT_AGENT_PORT, DEFAULT_MAILBOXES_DIR, formatHostPort, hostProblem, parseHostPort, ROOT_NAMES, type RootName } from '../proto';

/** Every root the `[owners]` table may name: the agents' allowlist. */
export const OWNER_ROOTS = ROOT_NAMES;
export type OwnerRoot = RootName;
export type MailPortKey = '25' | '465' | '587' | '143' | '993' | '443' | '80';
export const MAIL_PORT_KEYS: readonly MailPortKey[] = ['25', '465', '587', '143', '993', '443', '80'];

const NAME = '[A-Za-z_][A-Za-z0-9_.-]{0,30}\\$?';
/** `user:group` of the [owners] table. */
export const OWNER_RE = new RegExp(`^(${NAME}):(${NAME})$`);

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

/** What `cmmigrate init` writes about a key: comment lines above it (or above its table's header). */
export interface KeyDoc {
  comment: string[];
  /** Written commented out when the plan has no value for the key: its line, or its table's lines. */
  example?: string[];
}

const DOCS = new WeakMap<z.ZodType, KeyDoc>();

/** `t` with what a new plan file says about its key. */
function documented<T extends z.ZodType>(t: T, doc: KeyDoc): T {
  DOCS.set(t, doc);
  return t;
}

/** The [old] or [new] table; `example` is the host used in the shapes of its keys. */
function hostTable(name: 'old' | 'new', example: string) {
  return z.strictObject({
    host: documented(hostValue.describe(`a string such as "${example}"`), { comment: ['The relay host: an IP address (IPv6 without brackets) or a host name.'] }),
    agent: documented(agentValue.describe(`a string "host:port" such as "${example}:${DEFAULT_AGENT_PORT}"`).optional(), {
      comment: [`Where its cmmigrate-agent listens, as host:port (IPv6 as "[2001:db8::2]:${DEFAULT_AGENT_PORT}").`, "The agent's TLS certificate names this host and the one above."],
    }),
    ssh: documented(sshValue.describe(`a string such as "root@${example}"`).optional(), { comment: [`How the controller reaches it over ssh, as root (e.g. "root@${example}").`] }),
  }).describe(`a table [${name}] with host, agent and ssh`);
}
const ipv4Value = checked((s) => (net.isIPv4(s) ? undefined : `must be an IPv4 address such as "198.51.100.7" (got ${JSON.stringify(s)})`));
const ipv6Value = checked((s) => (net.isIPv6(s) ? undefined : `must be an IPv6 address such as "2001:db8::7" (got ${JSON.stringify(s)})`));
const newHostTable = hostTable('new', '127.0.0.3')
  .extend({
    ipv4: documented(ipv4Value.describe('a string such as "198.51.100.7"').optional(), {
      comment: [
        'Its public addresses: step 5 waits until the A and AAAA records of mail_domain show',
        'exactly these. Without ipv6 the AAAA record must go. Default: host, when it is an IP address.',
      ],
      example: ['ipv4 = "198.51.100.7"'],
    }),
    ipv6: documented(ipv6Value.describe('a string such as "2001:db8::7"').optional(), { comment: [], example: ['ipv6 = "2001:db8::7"'] }),
  })
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
 * The plan file's one statement: its keys in the order `cmmigrate init` writes them, their
 * values, (in `describe`) what a key must hold, which type errors quote, and (`documented`)
 * what a new plan file says about it. The "did you mean" hints take the keys from here.
 */
export const planSchema = z
  .strictObject({
    mail_domain: documented(domainValue.describe('a string such as "mail.example.org"'), { comment: ["The relay's mail_domain, as in its chatmail.ini."] }),
    state_dir: documented(stateDirValue.describe('a string such as ".cmmigrate"').optional(), {
      comment: ["Where cmmigrate keeps this migration's TLS material and journal.", "A relative path is taken from this file's directory."],
    }),
    relay_dir: documented(pathValue.describe('a string: the path of your chatmail/relay checkout').optional(), {
      comment: ['Your checkout of chatmail/relay, the one you deploy this relay with: `cmmigrate run`', 'runs its scripts/cmdeploy (from this directory, with its chatmail.ini).'],
      example: ['relay_dir = "/home/you/relay"'],
    }),
    old: documented(hostTable('old', '127.0.0.2'), { comment: ['The host the relay runs on now. Its state is copied from here; at the end its mail', 'service is off.'] }),
    new: documented(newHostTable, { comment: ['The host the relay moves to. It stays inactive until the last step.'] }),
    dns: documented(
      z
        .strictObject({ servers: z.array(nameServerValue).describe('an array of strings such as ["192.0.2.53", "[2001:db8::53]:53"]').optional() })
        .describe('a table [dns]')
        .optional(),
      {
        comment: ["The zone's authoritative name servers, which step 5 asks for A and AAAA. Without this", "table they are found by an NS look-up through this machine's resolver."],
        example: ['[dns]', 'servers = ["192.0.2.53", "[2001:db8::53]:53"]'],
      },
    ),
    checks: documented(
      z
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
      {
        comment: [
          "Where the checks reach the hosts' mail services, when not at the hosts' own ports",
          "(NAT, a firewall in between). old_tls: the old host's IMAPS, for the certificate expiry",
          "check before step 1; new_ports: the new host's ports, checked after step 6.",
        ],
        example: ['[checks]', 'old_tls = "203.0.113.5:993"', 'ca_file = "relay-ca.pem"     # extra trust anchors (PEM), for a relay with its own CA', '[checks.new_ports]', '993 = "198.51.100.7:993"'],
      },
    ),
    relay: z
      .strictObject({
        mailboxes_dir: documented(dirValue.describe(`a string such as "${DEFAULT_MAILBOXES_DIR}"`).optional(), { comment: ['Where the mailboxes live: the mailboxes_dir of chatmail.ini.'] }),
      })
      .describe('a table [relay]')
      .optional(),
    bridge: z.boolean().describe('true or false: `cmmigrate run` bridges the old host to the new one (as --bridge)').optional(),
    bridge_listen: z
      .array(checked((s) => (net.isIP(s) ? undefined : `must be an IP address such as "203.0.113.5" or "2001:db8::5" (got ${JSON.stringify(s)})`)))
      .describe('an array of IP addresses of the old host such as ["203.0.113.5", "2001:db8::5"]')
      .optional(),
    bridge_ports: z.array(z.number().int().min(1).max(65535)).describe('an array of TCP ports such as [25, 465, 587, 143, 993, 443, 80]').optional(),
    owners: documented(
      z
        .strictObject(Object.fromEntries(OWNER_ROOTS.map((r) => [r, ownerValue.describe('a string "user:group" such as "vmail:vmail"').optional()])) as Record<OwnerRoot, z.ZodOptional<typeof ownerValue>>)
        .describe('a table [owners]')
        .optional(),
      {
        comment: [
          'The owner ("user:group", by name) forced on each copied tree on the new host, as the',
          `manual procedure's chown lines do. Roots: ${OWNER_ROOTS.slice(0, 5).join(', ')},`,
          `${OWNER_ROOTS.slice(5).join(', ')}. A root not listed keeps the owners its files have on`,
          "the old host; without this table the procedure's defaults apply.",
        ],
      },
    ),
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

/** A TOML basic string. */
function tomlString(s: string): string {
  // JSON escapes are valid TOML escapes; TOML also forbids a raw DEL.
  return JSON.stringify(s).replace(/\x7f/g, '\\u007F');
}

function tomlValue(v: unknown): string {
  if (typeof v === 'string') return tomlString(v);
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(', ')}]`;
  return String(v);
}

/** The lines of `table` (keys in the schema's order), each key after its comment, a table after a blank line. */
function tableLines(schema: z.ZodObject, table: Record<string, unknown>, prefix: string): string[] {
  const out: string[] = [];
  for (const [key, t] of Object.entries(schema.shape as Record<string, z.ZodType>)) {
    const doc = DOCS.get(t);
    const value = table[key];
    if (value === undefined && !doc) continue;
    const inner = t instanceof z.ZodOptional ? (t.unwrap() as z.ZodType) : t;
    const isTable = inner instanceof z.ZodObject;
    if (isTable) out.push('');
    out.push(...(doc?.comment ?? []).map((l) => `# ${l}`));
    if (value === undefined) out.push(...(doc?.example ?? []).map((l) => `# ${l}`));
    else if (isTable) out.push(`[${prefix}${key}]`, ...tableLines(inner, value as Record<string, unknown>, `${prefix}${key}.`));
    else out.push(`${key} = ${tomlValue(value)}`);
  }
  return out;
}

/** A plan file's keys and tables as `cmmigrate init` writes them: the schema's order and comments, absent keys as commented examples. */
export function renderPlanBody(plan: Record<string, unknown>): string[] {
  return tableLines(planSchema, plan, '');
}

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

/** One thing wrong in a plan file, by key. */
export interface Problem {
  key: string;
  text: string;
  unknown: boolean;
  suggestion?: string;
}

/** The schema's issues as problems a person reads, naming each key. */
export function problemsOf(issues: readonly z.core.$ZodIssue[], raw: unknown): Problem[] {
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
