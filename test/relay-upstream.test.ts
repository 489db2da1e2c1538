import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { bridgedTcpPorts, deployPortChecks, relayPortConflict, relayUnits, servedPorts, unitsActivateStarts, unitsInertOnNewHost, unitsToStopAtStep3, unitsWithStep2DropIns, UPSTREAM_UNITS, type RelayShape } from '../controller/relay/upstream';

const acme: RelayShape = { tlsMode: 'acme', ipv4: false, enableIroh: true, mtail: false };

describe('upstream units', () => {
  it('step 3 stops timers before the oneshots they start, and waits for a running expire', () => {
    const stops = unitsToStopAtStep3(acme);
    const names = stops.map((s) => s.unit);
    expect(names).not.toContain('postfix.service');
    expect(names).not.toContain('dovecot.service');
    for (const u of ['chatmail-expire.timer', 'chatmail-expire.service', 'acmetool-reconcile.timer', 'acmetool-reconcile.service', 'filtermail-transport.service', 'chatmail-fsreport.timer', 'doveauth.service']) {
      expect(names).toContain(u);
    }
    expect(names.indexOf('chatmail-expire.timer')).toBeLessThan(names.indexOf('chatmail-expire.service'));
    expect(names.indexOf('acmetool-reconcile.timer')).toBeLessThan(names.indexOf('acmetool-reconcile.service'));
    expect(stops.find((s) => s.unit === 'chatmail-expire.service')?.how).toBe('stop-and-wait');
    expect(stops.find((s) => s.unit === 'doveauth.service')?.how).toBe('stop');
    expect(names).not.toContain('tls-cert-reload.path');
  });

  it('follows the TLS mode: acmetool units only with acme, tls-cert-reload.path only with external', () => {
    const ext = unitsToStopAtStep3({ ...acme, tlsMode: 'external' }).map((s) => s.unit);
    expect(ext).toContain('tls-cert-reload.path');
    expect(ext.some((u) => u.startsWith('acmetool'))).toBe(false);
    expect(unitsActivateStarts({ ...acme, tlsMode: 'self' }).some((u) => u.startsWith('acmetool') || u.startsWith('tls-cert'))).toBe(false);
  });

  it('keeps postfix and opendkim (started by their packages) inert on the new host; no opendkim on an IPv4 relay', () => {
    const inert = unitsInertOnNewHost(acme).map((u) => u.unit);
    expect(inert).toEqual(expect.arrayContaining(['postfix.service', 'opendkim.service', 'dovecot.service', 'chatmail-expire.timer', 'acmetool-reconcile.timer']));
    expect(UPSTREAM_UNITS.filter((u) => u.startedByPackage).map((u) => u.unit)).toEqual(['opendkim.service', 'postfix.service', 'fcgiwrap.service']);
    expect(relayUnits({ ...acme, ipv4: true }).map((u) => u.unit)).not.toContain('opendkim.service');
    expect(unitsWithStep2DropIns({ ...acme, ipv4: true })).toEqual(['dovecot.service', 'postfix.service']);
  });

  it('activate starts mtail only with mtail_address, and never the oneshots', () => {
    expect(unitsActivateStarts(acme)).not.toContain('mtail.service');
    expect(unitsActivateStarts({ ...acme, mtail: true })).toContain('mtail.service');
    expect(unitsActivateStarts(acme)).not.toContain('chatmail-expire.service');
    expect(unitsActivateStarts(acme)).toContain('turnserver.service');
  });
});

describe('upstream ports', () => {
  it('is the deploy port list of deployers.py, with 402 only for acme and the ini moving local ports', () => {
    const ports = deployPortChecks({}, 'acme').map((c) => c.port);
    expect(ports).toEqual([25, 53, 402, 143, 80, 443, 465, 587, 993, 3340, 3903, 3904, 8443, 10025, 10026, 10080, 10081, 10082, 10083]);
    expect(deployPortChecks({}, 'self').map((c) => c.port)).not.toContain(402);
    expect(deployPortChecks({ filtermail_smtp_port: ' 11080 ' }, 'self').map((c) => c.port)).toContain(11080);
  });

  it('names why a relay port cannot be an agent port', () => {
    expect(relayPortConflict(443)).toMatch(/^port 443 belongs to the relay \(nginx\): cmdeploy run refuses/);
    expect(relayPortConflict(402)).toContain('acmetool');
    expect(relayPortConflict(7443)).toBeUndefined();
    expect(relayPortConflict(10080, { filtermail_smtp_port: '11080' })).toBeUndefined();
  });

  it('checks 143 with IMAP STARTTLS, 80 plainly, TURN and iroh by their units', () => {
    const served = servedPorts(acme);
    expect(served.find((p) => p.port === 143)).toMatchObject({ tls: 'imap-starttls', check: 'connect' });
    expect(served.find((p) => p.port === 3478)).toMatchObject({ proto: 'udp', check: 'unit', unit: 'turnserver.service' });
    expect(served.find((p) => p.port === 3340)).toMatchObject({ unit: 'iroh-relay.service', check: 'unit' });
    expect(servedPorts({ ...acme, enableIroh: false }).some((p) => p.port === 3340)).toBe(false);
    expect(bridgedTcpPorts(acme)).toEqual([25, 465, 587, 143, 993, 443, 80]);
  });

  it('cites upstream files that exist in the relay repository, when its mirror is here', () => {
    const git = '/work/.mirror/chatmail+relay/repo';
    let files: string;
    try {
      files = execFileSync('git', ['--git-dir', git, 'ls-tree', '-r', '--name-only', '1.12.0'], { encoding: 'utf8' });
    } catch {
      return; // no mirror on this machine
    }
    for (const u of UPSTREAM_UNITS) {
      for (const cited of u.source.match(/cmdeploy\/src\/\S+?\.(?:py|f|j2|toml)/g) ?? []) expect(files.split('\n')).toContain(cited);
    }
  });
});
