import * as crypto from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { certificateExpiry, checkServices, expiryWarning, fetchCertificate, MAIL_PORTS, probeServices, type MailPort, type ServiceCheckOptions } from '../controller/service-check';
import { days, selfSignedCertificate, type TestCertificate } from './support/test-certs';
import { failure } from './support/expect-error';

// The new host is 127.0.0.66; its five services listen on ports of their own, given to
// the check as its host:port map.
const HOST = '127.0.0.66';
const DOMAIN = 'mail.example.org';

let good: TestCertificate;
let other: TestCertificate;
let soon: TestCertificate;
let expired: TestCertificate;

beforeAll(async () => {
  [good, other, soon, expired] = await Promise.all([
    selfSignedCertificate({ dnsNames: [DOMAIN, `mta-sts.${DOMAIN}`, `www.${DOMAIN}`] }),
    selfSignedCertificate({ dnsNames: ['other.example.net'] }),
    selfSignedCertificate({ dnsNames: ['*.example.org'], notAfter: new Date(days(10).getTime() + 3600_000) }),
    selfSignedCertificate({ dnsNames: [DOMAIN], notBefore: days(-100), notAfter: days(-1) }),
  ]);
});

const servers: net.Server[] = [];
const sockets = new Set<net.Socket>();
afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

async function listen(srv: net.Server): Promise<string> {
  servers.push(srv);
  srv.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => srv.listen(0, HOST, resolve));
  return `${HOST}:${(srv.address() as net.AddressInfo).port}`;
}

// The check hangs up as soon as it knows enough: a reset is normal here.
const ignoreErrors = (s: net.Socket): void => void s.on('error', () => undefined);
/** A TCP service that greets and hangs up, as SMTP would after QUIT. */
const plain = (): Promise<string> =>
  listen(
    net.createServer((s) => {
      ignoreErrors(s);
      s.end('220 test ESMTP\r\n');
    }),
  );
const tlsService = (c: TestCertificate): Promise<string> =>
  listen(
    tls.createServer({ cert: c.cert, key: c.key }, (s) => {
      ignoreErrors(s);
      s.end('* OK IMAP ready\r\n');
    }),
  );

/** IMAP on a plain port that upgrades on STARTTLS with `c` (dovecot's 143), or refuses it. */
const imapStarttls = (c: TestCertificate, refuse = false): Promise<string> =>
  listen(
    net.createServer((s) => {
      ignoreErrors(s);
      s.write('* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] Dovecot ready.\r\n');
      const onData = (d: Buffer): void => {
        const [tag, cmd] = d.toString().trim().split(' ');
        if (cmd?.toUpperCase() !== 'STARTTLS') return void s.write(`${tag} BAD\r\n`);
        if (refuse) return void s.write(`${tag} NO STARTTLS not available\r\n`);
        s.removeListener('data', onData);
        s.write(`${tag} OK Begin TLS negotiation now.\r\n`);
        const secure = new tls.TLSSocket(s, { isServer: true, secureContext: tls.createSecureContext({ cert: c.cert, key: c.key }) });
        secure.on('error', () => secure.destroy());
      };
      s.on('data', onData);
    }),
  );
/** HTTP that answers every request with `status` (nginx on 80: redirects, or ACME challenges). */
const http = (status = 301): Promise<string> =>
  listen(
    net.createServer((s) => {
      ignoreErrors(s);
      s.once('data', () => s.end(`HTTP/1.1 ${status} Moved Permanently\r\nLocation: https://${DOMAIN}/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`));
    }),
  );

/** The seven services; 465 and 993 speak TLS with `cert`, 143 after STARTTLS; 80 answers HTTP. */
async function mailHost(cert: TestCertificate): Promise<Record<MailPort, string>> {
  // servers[0..4] are 25, 465, 587, 993, 443 (the tests close some by index).
  const e = { 25: await plain(), 465: await tlsService(cert), 587: await plain(), 993: await tlsService(cert), 443: await plain() };
  return { ...e, 143: await imapStarttls(cert), 80: await http() };
}

function options(endpoints: Partial<Record<MailPort, string>>, extra: Partial<ServiceCheckOptions> = {}): ServiceCheckOptions {
  return { host: HOST, mailDomain: DOMAIN, endpoints, ca: good.cert, timeoutMs: 2000, ...extra };
}


describe('checkServices', () => {
  it('a host that serves mail: seven open ports, a trusted certificate for mail_domain on 993, 465 and on 143 after STARTTLS, an HTTP answer on 80', async () => {
    const endpoints = await mailHost(good);
    const report = await checkServices(options(endpoints));
    expect(report.ok).toBe(true);
    expect(report.problems).toEqual([]);
    expect(report.warnings).toEqual([]);
    expect(report.results.map((r) => [r.port, r.endpoint, r.open])).toEqual(MAIL_PORTS.map((p) => [p, endpoints[p], true]));
    expect(report.results.find((r) => r.port === 80)!.httpStatus).toBe(301);
    for (const port of [465, 993, 143]) {
      const c = report.results.find((r) => r.port === port)!.certificate!;
      expect(c).toMatchObject({ trusted: true, identityError: undefined, altNames: [`DNS:${DOMAIN}`, `DNS:mta-sts.${DOMAIN}`, `DNS:www.${DOMAIN}`] });
      expect(c.daysLeft).toBeGreaterThanOrEqual(89);
      expect(c.fingerprint256).toBe(new crypto.X509Certificate(good.cert).fingerprint256);
    }
    expect(report.results.find((r) => r.port === 25)!.certificate).toBeUndefined();
  });

  it('a closed port is step.port_closed naming the host and the port', async () => {
    const endpoints = await mailHost(good);
    const closed = servers[2]; // 587
    await new Promise((r) => closed.close(r));
    const err = await failure(checkServices(options(endpoints)));
    expect(err.code).toBe('step.port_closed');
    expect(err.message).toBe(
      `the new host ${HOST} does not serve mail for ${DOMAIN} as it should: port 587 (SMTP submission) at ${endpoints[587]}: connection refused (nothing listens there)`,
    );
    expect(err.hint).toContain('systemctl status postfix dovecot nginx');
    // A closed TLS port too: both are listed, each with its port.
    await new Promise((r) => servers[3].close(r)); // 993
    const both = await failure(checkServices(options(endpoints, { side: 'old' })));
    expect(both.message).toContain(`the old host ${HOST}`);
    expect(both.message).toContain(`port 587 (SMTP submission) at ${endpoints[587]}: connection refused`);
    expect(both.message).toContain(`port 993 (IMAPS) at ${endpoints[993]}: connection refused`);
  });

  it('a certificate for another name is step.certificate_mismatch', async () => {
    const endpoints = await mailHost(good);
    endpoints[993] = await tlsService(other);
    const err = await failure(checkServices(options(endpoints, { ca: [good.cert, other.cert] })));
    expect(err.code).toBe('step.certificate_mismatch');
    expect(err.message).toContain(`port 993 (IMAPS) at ${endpoints[993]}: the certificate is not valid for ${DOMAIN} (it names DNS:other.example.net)`);
    expect(err.message).not.toContain('port 465');
    expect(err.hint).toContain('/var/lib/acme');
  });

  it('a certificate near its expiry passes with a warning; an expired one fails', async () => {
    const endpoints = await mailHost(soon); // *.example.org, 10 days left
    const report = await checkServices(options(endpoints, { ca: soon.cert }));
    expect(report.ok).toBe(true);
    expect(report.results.find((r) => r.port === 465)!.certificate!.daysLeft).toBe(10);
    expect(report.warnings).toHaveLength(3);
    expect(report.warnings[0]).toMatch(new RegExp(`^the certificate on port 465 \\(SMTP submissions\\) at ${endpoints[465]} expires in 10 days \\(`));

    const old = await mailHost(expired);
    const err = await failure(checkServices(options(old, { ca: expired.cert })));
    expect(err.code).toBe('step.certificate_expired');
    expect(err.message).toContain('the certificate expired on');
  });

  it('an untrusted certificate fails; the same one passes once its CA is given (as step 6 passes the relay\'s own)', async () => {
    const endpoints = await mailHost(good);
    const err = await failure(checkServices(options(endpoints, { ca: undefined })));
    expect(err.code).toBe('step.certificate_untrusted');
    expect(err.message).toMatch(/the certificate is not trusted \(/);
    expect((await checkServices(options(endpoints, { ca: good.cert }))).ok).toBe(true);
  });

  it('a port that answers without TLS is step.tls_failed; one that never answers times out', async () => {
    const endpoints = await mailHost(good);
    endpoints[465] = await plain();
    endpoints[993] = await listen(net.createServer(ignoreErrors)); // accepts, says nothing
    const report = await probeServices(options(endpoints, { timeoutMs: 300 }));
    expect(report.ok).toBe(false);
    expect(report.problemCodes).toEqual(['step.tls_failed', 'step.tls_failed']);
    expect(report.problems[0]).toMatch(new RegExp(`^port 465 \\(SMTP submissions\\) at ${endpoints[465]}: no TLS handshake: `));
    expect(report.problems[1]).toBe(`port 993 (IMAPS) at ${endpoints[993]}: no TLS handshake: the server sent no TLS handshake in 300 ms`);
    expect(report.results.find((r) => r.port === 993)!.open).toBe(true);
  });
});

describe('checkServices: port 143 (IMAP with STARTTLS) and port 80 (HTTP)', () => {
  it('checks the certificate offered after STARTTLS on 143, as on 993', async () => {
    const endpoints = await mailHost(good);
    endpoints[143] = await imapStarttls(other);
    const err = await failure(checkServices(options(endpoints, { ca: [good.cert, other.cert] })));
    expect(err.code).toBe('step.certificate_mismatch');
    expect(err.message).toContain(`port 143 (IMAP) at ${endpoints[143]}: the certificate is not valid for ${DOMAIN} (it names DNS:other.example.net)`);
    expect(err.message).not.toContain('port 993');
  });

  it('a 143 that refuses STARTTLS, or greets as something else, is step.tls_failed; a closed one step.port_closed', async () => {
    const endpoints = await mailHost(good);
    endpoints[143] = await imapStarttls(good, true);
    let report = await probeServices(options(endpoints));
    expect(report.problemCodes).toEqual(['step.tls_failed']);
    expect(report.problems[0]).toBe(`port 143 (IMAP) at ${endpoints[143]}: no TLS after STARTTLS: STARTTLS refused: "cm1 NO STARTTLS not available"`);
    endpoints[143] = await plain();
    report = await probeServices(options(endpoints));
    expect(report.problems).toEqual([`port 143 (IMAP) at ${endpoints[143]}: no TLS after STARTTLS: not an IMAP greeting: "220 test ESMTP"`]);
    endpoints[143] = `${HOST}:1`;
    report = await probeServices(options(endpoints));
    expect(report.problemCodes).toEqual(['step.port_closed']);
  });

  it('a port 80 that accepts but does not answer HTTP is step.http_failed; one that answers any status passes', async () => {
    const endpoints = await mailHost(good);
    endpoints[80] = await plain();
    const err = await failure(checkServices(options(endpoints)));
    expect(err.code).toBe('step.http_failed');
    expect(err.message).toContain(`port 80 (HTTP) at ${endpoints[80]}: no HTTP answer: not an HTTP answer: "220 test ESMTP"`);
    expect(err.hint).toContain('nginx');
    endpoints[80] = await listen(net.createServer(ignoreErrors)); // accepts, says nothing
    const silent = await probeServices(options(endpoints, { timeoutMs: 300 }));
    expect(silent.problems).toEqual([`port 80 (HTTP) at ${endpoints[80]}: no HTTP answer: no answer in 300 ms`]);
    endpoints[80] = await http(404);
    const ok = await checkServices(options(endpoints));
    expect(ok.results.find((r) => r.port === 80)!.httpStatus).toBe(404);
  });
});

describe('certificate expiry (preflight)', () => {
  it('fetchCertificate reports the old host\'s certificate and its days left, whatever it is', async () => {
    const endpoint = await tlsService(soon);
    const info = await fetchCertificate(endpoint, DOMAIN);
    expect(info).toMatchObject({ daysLeft: 10, trusted: false, identityError: undefined, altNames: ['DNS:*.example.org'] });
    expect(expiryWarning(info, `the old host's certificate for ${DOMAIN}`)).toMatch(/^the old host's certificate for mail.example.org expires in 10 days \(20\d\d-/);
    expect(expiryWarning(info, 'x', 10)).toBeUndefined();
    const closed = await failure(fetchCertificate(`${HOST}:1`, DOMAIN));
    expect(closed.code).toBe('step.tls_failed');
    expect(closed.message).toBe(`no TLS handshake with ${HOST}:1: connection refused (nothing listens there)`);
  });

  it('certificateExpiry reads PEM, parsed certificates and what a TLS socket reports', () => {
    const now = Date.now();
    expect(certificateExpiry(soon.cert, now).daysLeft).toBe(10);
    expect(certificateExpiry(new crypto.X509Certificate(good.cert), now).daysLeft).toBe(89);
    expect(certificateExpiry({ valid_to: 'Jan  1 00:00:00 2030 GMT' } as tls.PeerCertificate, Date.parse('2029-12-01T00:00:00Z'))).toEqual({
      validTo: new Date('2030-01-01T00:00:00Z'),
      daysLeft: 31,
    });
    expect(certificateExpiry(expired.cert, now).daysLeft).toBeLessThan(0);
  });
});
