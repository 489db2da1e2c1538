import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CmError } from '../proto/errors';
import {
  assertMovableDomain,
  checkRecords,
  findAuthoritativeServers,
  ipLiteralProblem,
  parseNameServers,
  recordsToSet,
  ttlWarnings,
  waitForRecords,
  type NameServer,
  type RecordCheck,
} from '../controller/dns';
import { startNsd, type TestNsd, type ZoneRecord } from './support/nsd';
import { failure } from './support/expect-error';

// Two authoritative servers for example.org, as a zone has: ns1 on 127.0.0.77, ns2 on
// 127.0.0.78, on the same high port. The old relay host is 127.0.0.2 / 2001:db8::2, the
// new one 127.0.0.3 / 2001:db8::3.
const NS1 = '127.0.0.77';
const NS2 = '127.0.0.78';
const DOMAIN = 'mail.example.org';
const OLD = { ipv4: ['127.0.0.2'], ipv6: ['2001:db8::2'] };
const NEW = { ipv4: ['127.0.0.3'], ipv6: ['2001:DB8:0::3'] };

function zone(mail: Array<Omit<ZoneRecord, 'name'>>): ZoneRecord[] {
  return [
    { name: '@', type: 'NS', data: 'ns1' },
    { name: '@', type: 'NS', data: 'ns2' },
    { name: 'ns1', type: 'A', data: NS1 },
    { name: 'ns2', type: 'A', data: NS2 },
    { name: 'www', type: 'CNAME', data: 'mail' },
    ...mail.map((r) => ({ name: 'mail', ...r })),
  ];
}
const oldZone = (ttl = 300): ZoneRecord[] => zone([{ type: 'A', data: '127.0.0.2', ttl }, { type: 'AAAA', data: '2001:db8::2', ttl: 300 }]);
const newZone = (): ZoneRecord[] => zone([{ type: 'A', data: '127.0.0.3' }, { type: 'AAAA', data: '2001:db8::3' }]);

let ns1: TestNsd;
let ns2: TestNsd;
let servers: NameServer[];

beforeAll(async () => {
  // One port for both, as NS records carry no port: the walk asks every server on it.
  ns1 = await startNsd(NS1, { 'example.org': oldZone() });
  ns2 = await startNsd(NS2, { 'example.org': oldZone() }, ns1.port);
  servers = [
    { name: 'ns1.example.org', endpoints: [ns1.endpoint] },
    { name: 'ns2.example.org', endpoints: [ns2.endpoint] },
  ];
}, 30_000);
afterAll(async () => {
  await Promise.all([ns1?.stop(), ns2?.stop()]);
});

async function both(records: ZoneRecord[]): Promise<void> {
  await Promise.all([ns1.setZone('example.org', records), ns2.setZone('example.org', records)]);
}


describe('the zone\'s authoritative servers', () => {
  it('are found by walking up the name with NS queries', async () => {
    const found = await findAuthoritativeServers(DOMAIN, { resolvers: [ns1.endpoint], port: ns1.port });
    expect(found.zone).toBe('example.org');
    expect(found.servers).toEqual([
      { name: 'ns1.example.org', endpoints: [`${NS1}:${ns1.port}`] },
      { name: 'ns2.example.org', endpoints: [ns2.endpoint] },
    ]);
    // The zone itself as mail domain, and a name below it that does not exist.
    expect((await findAuthoritativeServers('example.org', { resolvers: [ns1.endpoint], port: ns1.port })).zone).toBe('example.org');
    expect((await findAuthoritativeServers('a.b.example.org', { resolvers: [ns1.endpoint], port: ns1.port })).zone).toBe('example.org');
  });

  it('a resolver that refuses is an error naming the zone', async () => {
    const err = await failure(findAuthoritativeServers('mail.example.net', { resolvers: [ns1.endpoint], port: ns1.port }));
    expect(err.code).toBe('dns.lookup_failed');
    expect(err.message).toContain('mail.example.net');
    expect(err.hint).toContain('dns.servers');
  });

  it('are taken as given from the plan\'s dns.servers', () => {
    expect(parseNameServers(['192.0.2.53', '127.0.0.77:5353', '[2001:DB8::53]:53'])).toEqual([
      { name: '192.0.2.53', endpoints: ['192.0.2.53:53'] },
      { name: '127.0.0.77:5353', endpoints: ['127.0.0.77:5353'] },
      { name: '2001:db8::53', endpoints: ['[2001:db8::53]:53'] },
    ]);
    expect(() => parseNameServers(['ns1.example.org'])).toThrow(/is not an IP address/);
  });
});

describe('checkRecords', () => {
  it('records that match, with their TTLs', async () => {
    await both(oldZone());
    const check = await checkRecords(DOMAIN, servers, OLD);
    expect(check.matches).toBe(true);
    expect(check.problems).toEqual([]);
    expect(check.answers.map((a) => [a.a.addresses, a.a.ttl, a.aaaa.addresses, a.aaaa.ttl])).toEqual([
      [['127.0.0.2'], 300, ['2001:db8::2'], 300],
      [['127.0.0.2'], 300, ['2001:db8::2'], 300],
    ]);
    expect(ttlWarnings(check.answers, DOMAIN)).toEqual([]);
  });

  it('a TTL above 300 s warns, naming the record, the TTL and the servers', async () => {
    await both(oldZone(3600));
    const check = await checkRecords(DOMAIN, servers, OLD);
    expect(check.matches).toBe(true);
    expect(ttlWarnings(check.answers, DOMAIN)).toEqual([
      `the A record of ${DOMAIN} has a TTL of 3600 s at ns1.example.org (${ns1.endpoint}), ns2.example.org (${ns2.endpoint}): ` +
        'lower it to 300 s and wait 3600 s before step 5, or resolvers keep sending mail to the old host for up to 3600 s after the switch',
    ]);
  });

  it('the AAAA to remove when the new host has no IPv6', async () => {
    const v4only = { ipv4: ['127.0.0.3'], ipv6: [] };
    expect(recordsToSet(DOMAIN, v4only)).toEqual([
      'mail.example.org. 300 IN A 127.0.0.3',
      'remove every AAAA record of mail.example.org. (the new host has no IPv6 address)',
    ]);
    await both(zone([{ type: 'A', data: '127.0.0.3' }, { type: 'AAAA', data: '2001:db8::2' }]));
    const before = await checkRecords(DOMAIN, servers, v4only);
    expect(before.matches).toBe(false);
    expect(before.problems).toEqual([
      `ns1.example.org (${ns1.endpoint}): AAAA 2001:db8::2 (TTL 300 s), want no AAAA record (remove it)`,
      `ns2.example.org (${ns2.endpoint}): AAAA 2001:db8::2 (TTL 300 s), want no AAAA record (remove it)`,
    ]);
    await both(zone([{ type: 'A', data: '127.0.0.3' }]));
    expect((await checkRecords(DOMAIN, servers, v4only)).matches).toBe(true);
  });

  it('a server that does not answer is a mismatch that says so', async () => {
    await both(oldZone());
    const deaf = parseNameServers([`127.0.0.79:${ns1.port}`]);
    const check = await checkRecords(DOMAIN, [...servers, ...deaf], OLD, { timeoutMs: 2_000 });
    expect(check.matches).toBe(false);
    expect(check.problems[0]).toMatch(new RegExp(`^127\\.0\\.0\\.79:${ns1.port}: no answer \\(E[A-Z]+\\), want A 127\\.0\\.0\\.2$`));
  });

  it('refuses an IP-literal mail domain with the reason', async () => {
    for (const d of ['203.0.113.10', '[203.0.113.10]', '[IPv6:2001:db8::1]']) {
      expect(ipLiteralProblem(d)).toMatch(/change every user's address/);
      expect(() => assertMovableDomain(d)).toThrow(CmError);
    }
    const err = await failure(checkRecords('[127.0.0.2]', servers, NEW));
    expect(err.code).toBe('precondition.ip_literal_domain');
    expect(err.exitCode).toBe(3);
    expect(err.message).toContain('@[127.0.0.2]');
    expect(ipLiteralProblem(DOMAIN)).toBeUndefined();
  });
});

describe('waitForRecords', () => {
  it('picks up a change made while it waits, and only once every server has it', async () => {
    await both(oldZone());
    const seen: RecordCheck[] = [];
    const result = await waitForRecords(DOMAIN, servers, NEW, {
      intervalMs: 20,
      timeoutMs: 20_000,
      onPoll: async (check) => {
        seen.push(check);
        const [a1, a2] = check.answers.map((s) => s.a.addresses[0]);
        // The provider updates its primary first, the secondary a poll later.
        if (a1 === '127.0.0.2') await ns1.setZone('example.org', newZone());
        else if (a2 === '127.0.0.2') await ns2.setZone('example.org', newZone());
      },
    });
    expect(result.matches).toBe(true);
    expect(result.answers.map((s) => [s.a.addresses, s.aaaa.addresses])).toEqual([
      [['127.0.0.3'], ['2001:db8::3']],
      [['127.0.0.3'], ['2001:db8::3']],
    ]);
    expect(seen.length).toBe(3);
    expect(seen[0].problems.length).toBe(4);
    expect(seen[1].problems).toEqual([
      `ns2.example.org (${ns2.endpoint}): A 127.0.0.2 (TTL 300 s), want A 127.0.0.3`,
      `ns2.example.org (${ns2.endpoint}): AAAA 2001:db8::2 (TTL 300 s), want AAAA 2001:db8::3`,
    ]);
  });

  it('gives up after the timeout with a clear error naming the records and what was seen', async () => {
    await both(oldZone());
    let clock = 1_000_000;
    let polls = 0;
    const err = await failure(
      waitForRecords(DOMAIN, servers, { ipv4: ['127.0.0.3'], ipv6: [] }, {
        timeoutMs: 10 * 60_000,
        intervalMs: 60_000,
        now: () => clock,
        sleep: async (ms) => {
          clock += ms;
        },
        onPoll: () => {
          polls++;
        },
      }),
    );
    expect(polls).toBe(11);
    expect(err.code).toBe('dns.not_switched');
    expect(err.message).toBe(
      `after 600 s the authoritative servers of ${DOMAIN} still do not show the new host: ` +
        `ns1.example.org (${ns1.endpoint}): A 127.0.0.2 (TTL 300 s), want A 127.0.0.3; ` +
        `ns1.example.org (${ns1.endpoint}): AAAA 2001:db8::2 (TTL 300 s), want no AAAA record (remove it); ` +
        `ns2.example.org (${ns2.endpoint}): A 127.0.0.2 (TTL 300 s), want A 127.0.0.3; ` +
        `ns2.example.org (${ns2.endpoint}): AAAA 2001:db8::2 (TTL 300 s), want no AAAA record (remove it)`,
    );
    expect(err.hint).toContain('mail.example.org. 300 IN A 127.0.0.3; remove every AAAA record of mail.example.org.');
    expect(err.hint).toContain('--dns-timeout');
  });
});
