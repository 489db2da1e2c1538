/**
 * The DNS side of a move: only the A and AAAA records of the mail domain change (step 5).
 * They are read where they are decided, at the zone's authoritative name servers (found
 * by walking up the name with NS queries, or given, as the plan's `dns.servers`), so no
 * resolver cache can show an old answer as new. The records count as switched only when
 * every authoritative server answers with exactly the new host's addresses: A with its
 * IPv4 addresses, AAAA with its IPv6 addresses, or no AAAA at all when it has none.
 */
import { promises as dnsp, type CaaRecord } from 'node:dns';
import * as net from 'node:net';
import { CmError, ExitCode, formatHostPort, parseHostPort, RERUN } from '../proto';

export const DNS_PORT = 53;
/** A TTL above this makes the switch slow: the procedure lowers it to about 300 s first. */
export const TTL_WARN_ABOVE = 300;

/** One authoritative server; `endpoints` are its addresses as `ip:port`, tried in order. */
export interface NameServer {
  /** Its NS name, or its address when it was given as one. */
  name: string;
  endpoints: string[];
}

/** The new host's addresses: what A and AAAA must hold. An empty list: no record of that type. */
export interface ExpectedAddresses {
  ipv4: string[];
  ipv6: string[];
}

export type RecordType = 'A' | 'AAAA';

export interface RecordAnswer {
  type: RecordType;
  /** Canonical addresses, sorted; empty when the server says there are none. */
  addresses: string[];
  /** Largest TTL among them, in seconds. */
  ttl?: number;
  /** The resolver's error code when the server gave no usable answer (ETIMEOUT, EREFUSED, ...). */
  error?: string;
}

export interface ServerAnswer {
  server: NameServer;
  a: RecordAnswer;
  aaaa: RecordAnswer;
}

export interface RecordCheck {
  domain: string;
  expected: ExpectedAddresses;
  answers: ServerAnswer[];
  /** Every server answers A and AAAA with exactly the expected addresses. */
  matches: boolean;
  /** What differs, one line per server and record type. */
  problems: string[];
}

export interface QueryOptions {
  /** Per try; two tries per server. Default 3000 ms. */
  timeoutMs?: number;
}

// ---------------------------------------------------------------------------------------
// Names and addresses

/** The address in the canonical form DNS answers use (lowercase, compressed IPv6). */
function canonicalIp(ip: string): string {
  return net.isIPv6(ip) ? new URL(`http://[${ip}]/`).hostname.slice(1, -1) : ip;
}

/** Why `domain` is an IP literal that no DNS change can move, or undefined. */
export function ipLiteralProblem(domain: string): string | undefined {
  const bare = domain.replace(/^\[(.*)\]$/, '$1').replace(/^ipv6:/i, '');
  if (!net.isIP(bare)) return undefined;
  return (
    `mail_domain ${domain} is an IP address, not a DNS name: every address on this relay ends in @[${bare}], ` +
    `so a move to a new IP address would change every user's address, and no DNS change can carry it over`
  );
}

/** Refuses an IP-literal mail domain with `precondition.ip_literal_domain`. */
export function assertMovableDomain(domain: string): void {
  const why = ipLiteralProblem(domain);
  if (why) {
    throw new CmError('precondition.ip_literal_domain', why, {
      hint: 'cmmigrate moves relays whose mail_domain is a DNS name; a relay on an IP literal can only keep its IP address (move the address itself to the new host, if your provider can)',
      details: { domain },
    });
  }
}

function checkExpected(expected: ExpectedAddresses): ExpectedAddresses {
  const bad = [...expected.ipv4.filter((a) => !net.isIPv4(a)), ...expected.ipv6.filter((a) => !net.isIPv6(a))];
  if (bad.length > 0 || expected.ipv4.length + expected.ipv6.length === 0) {
    throw new CmError('usage.bad_option', `the new host's addresses ${bad.length ? `${bad.join(', ')} are not IPv4/IPv6 addresses of the right kind` : 'are missing'}`, {
      hint: 'name the new host\'s public addresses with --new-ipv4 and --new-ipv6',
    });
  }
  return { ipv4: [...new Set(expected.ipv4.map(canonicalIp))].sort(), ipv6: [...new Set(expected.ipv6.map(canonicalIp))].sort() };
}

/**
 * Name servers given as addresses (`192.0.2.53`, `192.0.2.53:5353`, `[2001:db8::53]:53`),
 * as the plan's `dns.servers` lists them.
 */
export function parseNameServers(list: string[], label = 'dns.servers'): NameServer[] {
  return list.map((s) => {
    const { host, port } = parseHostPort(s, DNS_PORT, label);
    if (!net.isIP(host)) {
      throw new CmError('usage.bad_option', `${label} entry ${JSON.stringify(s)} is not an IP address`, {
        hint: `list the zone's authoritative servers by address, e.g. "192.0.2.53" or "[2001:db8::53]:53"`,
      });
    }
    const ip = canonicalIp(host);
    return { name: port === DNS_PORT ? ip : formatHostPort(ip, port), endpoints: [formatHostPort(ip, port)] };
  });
}

// ---------------------------------------------------------------------------------------
// Queries

function resolver(endpoints: string[], opts: QueryOptions): dnsp.Resolver {
  const r = new dnsp.Resolver({ timeout: opts.timeoutMs ?? 3000, tries: 2 });
  if (endpoints.length > 0) r.setServers(endpoints);
  return r;
}

/** "No such record" is an answer; anything else is a server that did not answer. */
const NO_RECORDS = new Set(['ENODATA', 'ENOTFOUND']);

async function query(r: dnsp.Resolver, domain: string, type: RecordType): Promise<RecordAnswer> {
  try {
    const recs = type === 'A' ? await r.resolve4(domain, { ttl: true }) : await r.resolve6(domain, { ttl: true });
    return { type, addresses: [...new Set(recs.map((x) => canonicalIp(x.address)))].sort(), ttl: Math.max(...recs.map((x) => x.ttl)) };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
    return NO_RECORDS.has(code) ? { type, addresses: [] } : { type, addresses: [], error: code };
  }
}

/** A and AAAA of `domain` at each server, asked in parallel. */
export async function queryRecords(domain: string, servers: NameServer[], opts: QueryOptions = {}): Promise<ServerAnswer[]> {
  return Promise.all(
    servers.map(async (server) => {
      const r = resolver(server.endpoints, opts);
      const [a, aaaa] = await Promise.all([query(r, domain, 'A'), query(r, domain, 'AAAA')]);
      return { server, a, aaaa };
    }),
  );
}

export interface FindServersOptions extends QueryOptions {
  /** Resolvers for the NS look-ups, as `ip` or `ip:port`; default the system's. */
  resolvers?: string[];
  /** The port the authoritative servers answer on; 53 but in tests. */
  port?: number;
}

/**
 * The zone that holds `domain` and its authoritative servers: the nearest name, from
 * `domain` up, that has NS records; each NS name with its addresses (IPv4 first).
 */
export async function findAuthoritativeServers(domain: string, opts: FindServersOptions = {}): Promise<{ zone: string; servers: NameServer[] }> {
  assertMovableDomain(domain);
  const r = resolver(opts.resolvers ?? [], opts);
  const port = opts.port ?? DNS_PORT;
  const labels = domain.replace(/\.$/, '').split('.');
  const via = opts.resolvers?.join(', ') ?? 'the system resolver';
  for (let i = 0; i < labels.length - 1; i++) {
    const zone = labels.slice(i).join('.');
    let names: string[];
    try {
      names = await r.resolveNs(zone);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
      if (NO_RECORDS.has(code)) continue;
      throw new CmError('dns.lookup_failed', `cannot look up the name servers of ${zone} through ${via}: ${code}`, {
        hint: 'check this machine\'s DNS resolver, or list the zone\'s authoritative servers in the plan as dns.servers',
        cause: err,
      });
    }
    if (names.length === 0) continue;
    const servers: NameServer[] = [];
    for (const name of [...new Set(names.map((n) => n.toLowerCase()))].sort()) {
      const [v4, v6] = await Promise.all([query(r, name, 'A'), query(r, name, 'AAAA')]);
      const endpoints = [...v4.addresses, ...v6.addresses].map((a) => formatHostPort(a, port));
      if (endpoints.length > 0) servers.push({ name, endpoints });
    }
    if (servers.length === 0) {
      throw new CmError('dns.lookup_failed', `the name servers of ${zone} (${names.join(', ')}) have no addresses that ${via} can find`, {
        hint: 'list the zone\'s authoritative servers in the plan as dns.servers',
      });
    }
    return { zone, servers };
  }
  throw new CmError('dns.lookup_failed', `found no zone for ${domain}: no name from it up has NS records (asked ${via})`, {
    hint: `check that ${domain} is delegated, or list its authoritative servers in the plan as dns.servers`,
  });
}

// ---------------------------------------------------------------------------------------
// Comparing

function describe(a: RecordAnswer): string {
  if (a.error) return `no answer (${a.error})`;
  if (a.addresses.length === 0) return `no ${a.type} record`;
  return `${a.type} ${a.addresses.join(', ')} (TTL ${a.ttl} s)`;
}

function want(type: RecordType, addresses: string[]): string {
  return addresses.length === 0 ? `no ${type} record` : `${type} ${addresses.join(', ')}`;
}

/** A server's label for messages: `ns1.example.org (192.0.2.53)`. */
export function serverLabel(s: NameServer): string {
  const ends = s.endpoints.map((e) => e.replace(/:53$/, '').replace(/^\[(.*)\]$/, '$1'));
  return ends.length === 1 && ends[0] === s.name ? s.name : `${s.name} (${ends.join(', ')})`;
}

/** Compares answers with the new host's addresses. */
export function compareRecords(domain: string, answers: ServerAnswer[], expected: ExpectedAddresses): RecordCheck {
  const problems: string[] = [];
  for (const ans of answers) {
    for (const [a, exp] of [
      [ans.a, expected.ipv4],
      [ans.aaaa, expected.ipv6],
    ] as const) {
      if (a.error || a.addresses.join(',') !== exp.join(',')) {
        const extra = exp.length === 0 && a.addresses.length > 0 ? ' (remove it)' : '';
        problems.push(`${serverLabel(ans.server)}: ${describe(a)}, want ${want(a.type, exp)}${extra}`);
      }
    }
  }
  return { domain, expected, answers, matches: problems.length === 0, problems };
}

/** Asks every server for A and AAAA of `domain` and compares them with `expected`. */
export async function checkRecords(domain: string, servers: NameServer[], expected: ExpectedAddresses, opts: QueryOptions = {}): Promise<RecordCheck> {
  assertMovableDomain(domain);
  const exp = checkExpected(expected);
  return compareRecords(domain, await queryRecords(domain, servers, opts), exp);
}

/** A warning per record type whose TTL is above `limit` at some server (preflight). */
export function ttlWarnings(answers: ServerAnswer[], domain: string, limit = TTL_WARN_ABOVE): string[] {
  const out: string[] = [];
  for (const type of ['A', 'AAAA'] as const) {
    const high = answers
      .map((s) => ({ s, rec: type === 'A' ? s.a : s.aaaa }))
      .filter(({ rec }) => rec.ttl !== undefined && rec.ttl > limit)
      .sort((x, y) => (y.rec.ttl ?? 0) - (x.rec.ttl ?? 0));
    if (high.length === 0) continue;
    const ttl = high[0].rec.ttl!;
    out.push(
      `the ${type} record of ${domain} has a TTL of ${ttl} s at ${high.map(({ s }) => serverLabel(s.server)).join(', ')}: ` +
        `lower it to ${limit} s and wait ${ttl} s before step 5, or resolvers keep sending mail to the old host for up to ${ttl} s after the switch`,
    );
  }
  return out;
}

/** The records to set in step 5, one line each, zone-file style. */
export function recordsToSet(domain: string, expected: ExpectedAddresses, ttl = TTL_WARN_ABOVE): string[] {
  const d = domain.endsWith('.') ? domain : `${domain}.`;
  const exp = checkExpected(expected);
  const lines = [...exp.ipv4.map((a) => `${d} ${ttl} IN A ${a}`), ...exp.ipv6.map((a) => `${d} ${ttl} IN AAAA ${a}`)];
  if (exp.ipv4.length === 0) lines.push(`remove every A record of ${d} (the new host has no IPv4 address)`);
  if (exp.ipv6.length === 0) lines.push(`remove every AAAA record of ${d} (the new host has no IPv6 address)`);
  return lines;
}

// ---------------------------------------------------------------------------------------
// Waiting

export interface WaitOptions {
  /** Give up after this long; default 30 minutes. */
  timeoutMs?: number;
  /** Between two rounds of queries; default 10 s. */
  intervalMs?: number;
  /** Per DNS try; default 3000 ms. */
  queryTimeoutMs?: number;
  /** Called after each round, before waiting for the next. */
  onPoll?: (check: RecordCheck, elapsedMs: number) => void | Promise<void>;
  /** Clock and sleep, replaceable in tests; the queries are always real. */
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  signal?: AbortSignal;
}

function realSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Polls the servers until A and AAAA of `domain` show exactly the expected addresses
 * everywhere, and returns that check. Rejects with `dns.not_switched`, naming what each
 * server still shows, when `timeoutMs` passes first.
 */
export async function waitForRecords(domain: string, servers: NameServer[], expected: ExpectedAddresses, opts: WaitOptions = {}): Promise<RecordCheck> {
  assertMovableDomain(domain);
  const exp = checkExpected(expected);
  const now = opts.now ?? Date.now;
  const sleep = opts.sleep ?? realSleep;
  const timeoutMs = opts.timeoutMs ?? 30 * 60_000;
  const interval = opts.intervalMs ?? 10_000;
  const started = now();
  for (;;) {
    if (opts.signal?.aborted) {
      throw new CmError('step.interrupted', `stopped waiting for the DNS records of ${domain}`, { hint: `run ${RERUN}`, exitCode: ExitCode.interrupted });
    }
    const check = compareRecords(domain, await queryRecords(domain, servers, { timeoutMs: opts.queryTimeoutMs }), exp);
    const elapsed = now() - started;
    await opts.onPoll?.(check, elapsed);
    if (check.matches) return check;
    if (elapsed + interval > timeoutMs) {
      throw new CmError('dns.not_switched', `after ${Math.round(elapsed / 1000)} s the authoritative servers of ${domain} still do not show the new host: ${check.problems.join('; ')}`, {
        hint: `set these records at your DNS provider: ${recordsToSet(domain, exp).join('; ')}; then run ${RERUN} (--dns-timeout waits longer, --skip-dns-wait goes on without waiting)`,
        details: { domain, expected: exp, problems: check.problems },
      });
    }
    await sleep(interval, opts.signal);
  }
}

/**
 * The TXT records of `name` at the first of `servers` that answers (each record as its
 * strings); [] when the name has none. Throws `dns.lookup_failed` when none answers.
 */
export async function queryTxt(name: string, servers: NameServer[], opts: QueryOptions = {}): Promise<string[][]> {
  return firstAnswer(name, 'TXT', servers, opts, (r) => r.resolveTxt(name));
}

/** The CAA records of `name` at the first of `servers` that answers; [] when it has none. */
export async function queryCaa(name: string, servers: NameServer[], opts: QueryOptions = {}): Promise<CaaRecord[]> {
  return firstAnswer(name, 'CAA', servers, opts, (r) => r.resolveCaa(name));
}

async function firstAnswer<T>(name: string, type: string, servers: NameServer[], opts: QueryOptions, ask: (r: dnsp.Resolver) => Promise<T[]>): Promise<T[]> {
  const errors: string[] = [];
  for (const server of servers) {
    try {
      return await ask(resolver(server.endpoints, opts));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
      if (NO_RECORDS.has(code)) return [];
      errors.push(`${serverLabel(server)}: ${code}`);
    }
  }
  throw new CmError('dns.lookup_failed', `no authoritative server answered for the ${type} records of ${name} (${errors.join('; ') || 'no servers'})`, {
    hint: 'list the zone\'s authoritative servers as dns.servers in the plan',
  });
}
