import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CmError } from '../proto/errors';
import { DEFAULT_OWNERS, loadPlan, parseHostPort, renderPlan, type PlanInput } from '../controller/plan';
import { failure } from './support/expect-error';

let dir: string;
beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-plan-'));
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const input: PlanInput = {
  mailDomain: 'mail.example.org',
  old: { host: '127.0.0.2', agent: '127.0.0.2:7826', ssh: 'root@127.0.0.2' },
  new: { host: '127.0.0.3', agent: '127.0.0.3:7826', ssh: 'root@127.0.0.3' },
};

async function write(text: string): Promise<string> {
  const file = path.join(dir, 'plan.toml');
  await fsp.writeFile(file, text);
  return file;
}


describe('renderPlan and loadPlan', () => {
  it('round-trips a plan with the defaults filled in', async () => {
    const text = renderPlan(input);
    expect(text).toMatch(/^# cmmigrate plan/);
    expect(text).toContain('[owners]');
    const file = await write(text);
    const plan = await loadPlan(file);
    expect(plan).toEqual({
      file,
      dir,
      mailDomain: 'mail.example.org',
      stateDir: path.join(dir, '.cmmigrate'),
      tlsDir: path.join(dir, '.cmmigrate', 'tls'),
      old: { host: '127.0.0.2', agentHost: '127.0.0.2', agentPort: 7826, agent: '127.0.0.2:7826', ssh: 'root@127.0.0.2' },
      new: { host: '127.0.0.3', agentHost: '127.0.0.3', agentPort: 7826, agent: '127.0.0.3:7826', ssh: 'root@127.0.0.3' },
      mailboxesDir: '/home/vmail/mail',
      owners: DEFAULT_OWNERS,
      relayDir: undefined,
      newAddresses: { ipv4: ['127.0.0.3'], ipv6: [] },
      dnsServers: [],
      checks: { oldTls: undefined, newPorts: {}, caFile: undefined },
    });
    // A loaded plan renders back to the same text.
    expect(renderPlan({ ...plan, stateDir: '.cmmigrate' })).toBe(text);
  });

  it('reads what run needs: relay_dir, the new addresses, dns.servers and the checks (issue 5)', async () => {
    const text = renderPlan({ ...input, relayDir: 'relay', new: { ...input.new, ipv4: '198.51.100.7', ipv6: '2001:db8::7' } });
    const extra = '\n[dns]\nservers = ["127.0.0.1:5353", "[::1]:53"]\n[checks]\nold_tls = "127.0.0.2:10993"\nca_file = "ca.pem"\n[checks.new_ports]\n993 = "127.0.0.3:10993"\n25 = "127.0.0.3:10025"\n';
    const plan = await loadPlan(await write(text.replace('\n[owners]', `${extra}\n[owners]`)));
    expect(plan.relayDir).toBe(path.join(dir, 'relay'));
    expect(plan.newAddresses).toEqual({ ipv4: ['198.51.100.7'], ipv6: ['2001:db8::7'] });
    expect(plan.dnsServers).toEqual(['127.0.0.1:5353', '[::1]:53']);
    expect(plan.checks).toEqual({ oldTls: '127.0.0.2:10993', caFile: path.join(dir, 'ca.pem'), newPorts: { '993': '127.0.0.3:10993', '25': '127.0.0.3:10025' } });
    // Without ipv4/ipv6 a host name gives no addresses: run's preflight then asks for them.
    const named = await loadPlan(await write('mail_domain = "m.example.org"\n[old]\nhost = "127.0.0.2"\n[new]\nhost = "new.example.org"\n'));
    expect(named.newAddresses).toEqual({ ipv4: [], ipv6: [] });
    // An IPv4 host with only ipv6 given keeps the host as its IPv4 address.
    const v6 = await loadPlan(await write('mail_domain = "m.example.org"\n[old]\nhost = "127.0.0.2"\n[new]\nhost = "198.51.100.7"\nipv6 = "2001:db8::7"\n'));
    expect(v6.newAddresses).toEqual({ ipv4: ['198.51.100.7'], ipv6: ['2001:db8::7'] });
  });

  it('names the key and the expected shape for bad run settings (issue 5)', async () => {
    const base = 'mail_domain = "m.example.org"\n[old]\nhost = "127.0.0.2"\n[new]\nhost = "127.0.0.3"\n';
    for (const [extra, key, text] of [
      ['[dns]\nservers = ["ns1.example.org"]\n', 'dns.servers.0', /IP address/],
      ['[dns]\nserver = ["127.0.0.1"]\n', 'dns.server', /unknown key dns\.server \(did you mean dns\.servers\?\)/],
      ['[checks.new_ports]\n995 = "127.0.0.3:995"\n', 'checks.new_ports.995', /unknown key checks\.new_ports\.995/],
      ['[checks]\nold_tls = "127.0.0.2"\n', 'checks.old_tls', /host:port/],
    ] as const) {
      const err = await loadPlan(await write(base + extra)).then(() => undefined, (e: CmError) => e);
      expect(err, extra).toBeInstanceOf(CmError);
      expect(err!.details?.keys, extra).toContain(key);
      expect(err!.message, extra).toMatch(text);
    }
    const ipv6 = await loadPlan(await write(base.replace('host = "127.0.0.3"\n', 'host = "127.0.0.3"\nipv6 = "127.0.0.3"\n'))).then(() => undefined, (e: CmError) => e);
    expect(ipv6?.message).toMatch(/new\.ipv6 must be an IPv6 address/);
  });

  it('keeps IPv6 agents, custom owners and odd strings intact', async () => {
    const file = await write(
      renderPlan({
        mailDomain: '_odd.example.org',
        stateDir: 'state "dir"',
        old: { host: '::1', agent: '[::1]:7900' },
        new: { host: 'new.example.org', ssh: 'admin@new.example.org' },
        mailboxesDir: '/srv/mail',
        owners: { mailboxes: { user: 'vmail', group: 'vmail' }, spool: { user: 'postfix', group: 'postdrop' } },
      }),
    );
    const plan = await loadPlan(file);
    expect(plan.mailDomain).toBe('_odd.example.org');
    expect(plan.stateDir).toBe(path.join(dir, 'state "dir"'));
    expect(plan.old).toEqual({ host: '::1', agentHost: '::1', agentPort: 7900, agent: '[::1]:7900', ssh: 'root@::1' });
    expect(plan.new.agent).toBe('new.example.org:7826');
    expect(plan.new.ssh).toBe('admin@new.example.org');
    expect(plan.mailboxesDir).toBe('/srv/mail');
    expect(plan.owners).toEqual({ mailboxes: { user: 'vmail', group: 'vmail' }, spool: { user: 'postfix', group: 'postdrop' } });
  });

  it('fills in defaults for keys and tables left out, and an empty [owners] forces none', async () => {
    const base = 'mail_domain = "m.example.org"\n[old]\nhost = "127.0.0.2"\n[new]\nhost = "127.0.0.3"\n';
    const plan = await loadPlan(await write(base));
    expect(plan.old.agent).toBe('127.0.0.2:7826');
    expect(plan.owners).toEqual(DEFAULT_OWNERS);
    expect(plan.mailboxesDir).toBe('/home/vmail/mail');
    expect((await loadPlan(await write(`${base}[owners]\n`))).owners).toEqual({});
  });

  it('names an unknown key with its table', async () => {
    const text = renderPlan(input).replace('agent = "127.0.0.2:7826"', 'agnet = "127.0.0.2:7826"');
    const file = await write(text);
    const err = await failure(loadPlan(file));
    expect(err.code).toBe('plan.unknown_key');
    expect(err.message).toContain('old.agnet');
    expect(err.message).toContain(file);
    expect(err.message).toContain('did you mean old.agent?');
  });

  it('names an unknown top-level key and an unknown owner root', async () => {
    const err = await failure(loadPlan(await write(`${renderPlan(input)}postfix = "postfix:postfix"\n`)));
    expect(err.code).toBe('plan.unknown_key');
    expect(err.message).toContain('owners.postfix');
    const err2 = await failure(loadPlan(await write(`mail_dmain = "x"\n${renderPlan(input)}`)));
    expect(err2.code).toBe('plan.unknown_key');
    expect(err2.message).toContain('unknown key mail_dmain');
  });

  it('refuses a bad port, naming the key', async () => {
    const err = await failure(loadPlan(await write(renderPlan(input).replace('127.0.0.3:7826', '127.0.0.3:70000'))));
    expect(err.code).toBe('plan.invalid');
    expect(err.message).toContain('new.agent');
    expect(err.message).toContain('70000');
  });

  it('refuses wrong types and missing keys with the expected shape', async () => {
    const err = await failure(loadPlan(await write(renderPlan(input).replace('host = "127.0.0.2"', 'host = 5'))));
    expect(err.code).toBe('plan.invalid');
    expect(err.message).toMatch(/old\.host must be a string .*, not integer 5/);
    const err2 = await failure(loadPlan(await write('mail_domain = "m.example.org"\n[old]\nhost = "127.0.0.2"\n')));
    expect(err2.code).toBe('plan.invalid');
    expect(err2.message).toContain('new is missing');
  });

  it('refuses unusable values', async () => {
    const cases: Array<[string, string, string]> = [
      ['mailboxes_dir = "/home/vmail/mail"', 'mailboxes_dir = "/"', 'relay.mailboxes_dir'],
      ['mailboxes_dir = "/home/vmail/mail"', 'mailboxes_dir = "home/vmail"', 'relay.mailboxes_dir'],
      ['mailboxes_dir = "/home/vmail/mail"', 'mailboxes_dir = "/home/../mail"', 'relay.mailboxes_dir'],
      ['acme = "root:root"', 'acme = "root"', 'owners.acme'],
      ['acme = "root:root"', 'acme = "ro ot:root"', 'owners.acme'],
      ['mail_domain = "mail.example.org"', 'mail_domain = ""', 'mail_domain'],
      ['ssh = "root@127.0.0.2"', 'ssh = "-oProxyCommand=x"', 'old.ssh'],
      ['host = "127.0.0.3"', 'host = "127.0.0.300"', 'new.host'],
      ['agent = "127.0.0.3:7826"', 'agent = "127.0.0.2:7826"', 'new.agent'],
    ];
    for (const [from, to, key] of cases) {
      const text = renderPlan(input).replace(from, to);
      expect(text).not.toBe(renderPlan(input));
      const err = await failure(loadPlan(await write(text)));
      expect([err.code, err.message]).toEqual(['plan.invalid', expect.stringContaining(key)]);
    }
  });

  it('reports a missing file with the init command to run', async () => {
    const file = path.join(dir, 'nope.toml');
    const err = await failure(loadPlan(file));
    expect(err.code).toBe('plan.not_found');
    expect(err.message).toContain(file);
    expect(err.hint).toContain('cmmigrate init --plan');
  });

  it('reports a TOML syntax error with its line', async () => {
    const err = await failure(loadPlan(await write('mail_domain = "m.example.org"\n[old]\nhost = = "x"\n')));
    expect(err.code).toBe('plan.syntax');
    expect(err.message).toContain('line 3');
  });
});

describe('parseHostPort', () => {
  it('splits the accepted forms', () => {
    expect(parseHostPort('127.0.0.2:7826')).toEqual({ host: '127.0.0.2', port: 7826 });
    expect(parseHostPort('[::1]:7826')).toEqual({ host: '::1', port: 7826 });
    expect(parseHostPort('[2001:db8::2]', 7826)).toEqual({ host: '2001:db8::2', port: 7826 });
    expect(parseHostPort('::1', 7826)).toEqual({ host: '::1', port: 7826 });
    expect(parseHostPort('relay.example.org', 7826)).toEqual({ host: 'relay.example.org', port: 7826 });
    expect(parseHostPort('relay.example.org:1')).toEqual({ host: 'relay.example.org', port: 1 });
    expect(parseHostPort('127.0.0.2:65535')).toEqual({ host: '127.0.0.2', port: 65535 });
  });

  it('refuses junk with usage.bad_option', () => {
    for (const junk of ['', ':7826', '127.0.0.2:', '127.0.0.2:0', '127.0.0.2:65536', '127.0.0.2:x', 'host', '[relay]:1',
      '2001:db8::2:7826x', 'a b:1', '-oops:1', '[::1]:7826:1', '1.2.3:1']) {
      let err: unknown;
      try {
        parseHostPort(junk);
      } catch (e) {
        err = e;
      }
      expect(err, junk).toBeInstanceOf(CmError);
      expect((err as CmError).code).toBe('usage.bad_option');
    }
  });

  it('names the flag it parses', () => {
    expect(() => parseHostPort('x:99999', 7826, '--old-agent')).toThrow(/--old-agent "x:99999"/);
  });
});
