/**
 * The proof, after step 6, that the new host serves mail: it accepts TCP connections on
 * the relay's public ports (SMTP 25, submissions 465, submission 587, IMAP 143, IMAPS 993,
 * HTTPS 443, HTTP 80: chatmail/relay's postfix master.cf, dovecot and nginx.conf), answers
 * an HTTP request on 80 (ACME challenges), and on the implicit-TLS ports 993 and 465, and on
 * 143 after STARTTLS (dovecot `ssl = required`), presents a certificate that is valid for
 * mail_domain (its SANs, checked as a TLS client would with the name sent as SNI), is in
 * date, and chains to a trusted root unless the relay uses a self-signed one. Also the
 * certificate expiry that preflight reports for the old host.
 */
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { CmError, formatHostPort, parseHostPort, RERUN, type ErrorCode } from '../proto';

/** The relay's public ports, in the order they are reported. */
export const MAIL_PORTS = [25, 465, 587, 143, 993, 443, 80] as const;
export type MailPort = (typeof MAIL_PORTS)[number];
export const PORT_NAMES: Record<MailPort, string> = {
  25: 'SMTP',
  465: 'SMTP submissions',
  587: 'SMTP submission',
  143: 'IMAP',
  993: 'IMAPS',
  443: 'HTTPS',
  80: 'HTTP',
};
/** The ports whose certificate is checked: implicit TLS, so the handshake comes first. */
export const TLS_PORTS: readonly MailPort[] = [993, 465];
/** IMAP with STARTTLS: the certificate is checked after the upgrade. */
export const STARTTLS_PORTS: readonly MailPort[] = [143];
/** The certificate ports, as step 6 reports them. */
export const CERTIFICATE_PORTS: readonly MailPort[] = [...TLS_PORTS, ...STARTTLS_PORTS];
/** HTTP: a request must be answered (nginx; ACME challenges come here). */
export const HTTP_PORTS: readonly MailPort[] = [80];
/** A certificate that expires sooner than this is worth a warning. */
export const EXPIRY_WARN_DAYS = 30;

const DAY_MS = 24 * 60 * 60 * 1000;

export interface CertificateInfo {
  subject: string;
  /** Subject alternative names as the certificate lists them: `DNS:mail.example.org`. */
  altNames: string[];
  issuer: string;
  validFrom: Date;
  validTo: Date;
  /** Whole days from now until validTo; negative once expired. */
  daysLeft: number;
  fingerprint256: string;
  /** Why the certificate is not valid for the name asked for, if it is not. */
  identityError?: string;
  /** Whether it chains to a trusted root (the system's, plus `ca`). */
  trusted: boolean;
  trustError?: string;
}

export interface PortResult {
  port: MailPort;
  /** `host:port` that was asked. */
  endpoint: string;
  open: boolean;
  /** Why the connection or the handshake failed. */
  error?: string;
  /** On the TLS ports, once the handshake succeeded (on 143 after STARTTLS). */
  certificate?: CertificateInfo;
  /** On port 80: the status of the answer. */
  httpStatus?: number;
}

export interface ServiceCheckOptions {
  /** The new host, as the plan names it. */
  host: string;
  mailDomain: string;
  /** Which host of the plan, for messages; default "new". */
  side?: string;
  /** Where to connect for each port, `host:port`; default `host:<the port>`. */
  endpoints?: Partial<Record<MailPort, string>>;
  /** Per connection; default 10 s. */
  timeoutMs?: number;
  /** Roots trusted besides the system's (PEM). */
  ca?: string | Buffer | Array<string | Buffer>;
  warnDays?: number;
  now?: () => number;
}

export interface ServiceReport {
  host: string;
  mailDomain: string;
  results: PortResult[];
  /** Each thing that is wrong, one line each; empty when the host serves mail. */
  problems: string[];
  /** Each problem's kind, parallel to `problems`. */
  problemCodes: ErrorCode[];
  /** Things to tell the operator that do not fail the step (certificate expiry). */
  warnings: string[];
  ok: boolean;
}

// ---------------------------------------------------------------------------------------
// Certificates

/** Expiry of a certificate (PEM, a parsed one, or what a TLS socket reports) in days from `now`. */
export function certificateExpiry(cert: string | Buffer | crypto.X509Certificate | tls.PeerCertificate, now: number = Date.now()): { validTo: Date; daysLeft: number } {
  const validToText =
    typeof cert === 'string' || Buffer.isBuffer(cert) ? new crypto.X509Certificate(cert).validTo : (cert as { validTo?: string; valid_to?: string }).validTo ?? (cert as tls.PeerCertificate).valid_to;
  const validTo = new Date(validToText);
  return { validTo, daysLeft: Math.floor((validTo.getTime() - now) / DAY_MS) };
}

/**
 * A warning when `info` expires within `days`, or undefined. `what` names the certificate:
 * "the old host's certificate for mail.example.org".
 */
export function expiryWarning(info: CertificateInfo, what: string, days = EXPIRY_WARN_DAYS): string | undefined {
  if (info.daysLeft >= days) return undefined;
  if (info.daysLeft < 0) return `${what} expired on ${info.validTo.toISOString()}`;
  return `${what} expires in ${info.daysLeft} day${info.daysLeft === 1 ? '' : 's'} (${info.validTo.toISOString()}): check that its renewal (acmetool on the relay) works`;
}

function nameList(dn: unknown): string {
  if (!dn || typeof dn !== 'object') return '';
  return Object.entries(dn as Record<string, string | string[]>)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`)
    .join(', ');
}

function describeCertificate(peer: tls.PeerCertificate, servername: string, socket: tls.TLSSocket, now: number): CertificateInfo {
  const { validTo, daysLeft } = certificateExpiry(peer, now);
  const identity = tls.checkServerIdentity(servername, peer);
  return {
    subject: nameList(peer.subject),
    altNames: (peer.subjectaltname ?? '').split(', ').filter(Boolean),
    issuer: nameList(peer.issuer),
    validFrom: new Date(peer.valid_from),
    validTo,
    daysLeft,
    fingerprint256: peer.fingerprint256,
    identityError: identity?.message,
    trusted: socket.authorized,
    trustError: socket.authorized ? undefined : String(socket.authorizationError ?? 'not trusted'),
  };
}

function trustAnchors(ca: ServiceCheckOptions['ca']): Array<string | Buffer> | undefined {
  if (ca === undefined) return undefined;
  // `ca` replaces Node's roots: keep them, so that a public certificate still verifies.
  return [...tls.rootCertificates, ...(Array.isArray(ca) ? ca : [ca])];
}

const duration = (ms: number): string => (ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`);

function connectError(err: NodeJS.ErrnoException, timeoutMs: number): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'connection refused (nothing listens there)';
    case 'ETIMEDOUT':
      return `no answer in ${duration(timeoutMs)} (a firewall, or the host is down)`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `unreachable (${err.code})`;
    default:
      return err.message;
  }
}

/** Opens a TCP connection, or says why it cannot. */
function tcpProbe(host: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (why: string | undefined): void => {
      sock.destroy();
      resolve(why);
    };
    sock.setTimeout(timeoutMs, () => done(connectError(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' }), timeoutMs)));
    sock.once('connect', () => done(undefined));
    sock.once('error', (e: NodeJS.ErrnoException) => done(connectError(e, timeoutMs)));
  });
}

export interface TlsProbeOptions {
  timeoutMs?: number;
  ca?: ServiceCheckOptions['ca'];
  now?: () => number;
}

interface Handshake {
  /** The TCP connection was made (so a failure after it is TLS's). */
  connected: boolean;
  certificate?: CertificateInfo;
  error?: string;
}

/**
 * Implicit TLS to host:port with `servername` as SNI; never rejects. With `over`, the
 * handshake runs on that connection (after STARTTLS).
 */
function tlsHandshake(host: string, port: number, servername: string, opts: TlsProbeOptions, over?: net.Socket): Promise<Handshake> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve) => {
    let connected = over !== undefined;
    const sock = tls.connect({ ...(over ? { socket: over } : { host, port }), servername, rejectUnauthorized: false, ca: trustAnchors(opts.ca) });
    const done = (h: Omit<Handshake, 'connected'>): void => {
      sock.destroy();
      resolve({ connected, ...h });
    };
    sock.once('connect', () => (connected = true));
    sock.setTimeout(timeoutMs, () =>
      done({ error: connected ? `the server sent no TLS handshake in ${duration(timeoutMs)}` : connectError(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' }), timeoutMs) }),
    );
    sock.once('error', (e: NodeJS.ErrnoException) => done({ error: connectError(e, timeoutMs) }));
    sock.once('secureConnect', () => {
      const peer = sock.getPeerCertificate();
      if (!peer || !peer.raw) return done({ error: 'the server presented no certificate' });
      done({ certificate: describeCertificate(peer, servername, sock, (opts.now ?? Date.now)()) });
    });
  });
}

/**
 * Connects with implicit TLS to `endpoint` (`host:port`), sending `servername` as SNI, and
 * describes the certificate it presents, whatever it is. Rejects with `step.tls_failed`
 * when no handshake happens. Preflight uses it for the old host's certificate expiry.
 */
export async function fetchCertificate(endpoint: string, servername: string, opts: TlsProbeOptions = {}): Promise<CertificateInfo> {
  const { host, port } = parseHostPort(endpoint, undefined, 'endpoint');
  const h = await tlsHandshake(host, port, servername, opts);
  if (!h.certificate) {
    throw new CmError('step.tls_failed', `no TLS handshake with ${endpoint}: ${h.error}`, {
      hint: `check that ${host} serves TLS on port ${port}, then run ${RERUN}`,
      details: { endpoint },
    });
  }
  return h.certificate;
}

/**
 * Reads the server's lines on `sock` until `done` accepts one (returns true) or rejects it
 * (returns a reason), the connection ends, or `timeoutMs` passes. Never rejects.
 */
function readLines(sock: net.Socket, timeoutMs: number, done: (line: string) => true | string | undefined): Promise<string | undefined> {
  return new Promise((resolve) => {
    let buf = '';
    const finish = (why: string | undefined): void => {
      clearTimeout(timer);
      sock.removeListener('data', onData);
      sock.removeListener('close', onClose);
      resolve(why);
    };
    const timer = setTimeout(() => finish(`no answer in ${duration(timeoutMs)}`), timeoutMs);
    const onClose = (): void => finish('the server closed the connection');
    const onData = (d: Buffer): void => {
      buf += d.toString('latin1');
      if (buf.length > 64 * 1024) return finish('the server sent a line longer than 64 KiB');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        const r = done(line);
        if (r !== undefined) return finish(r === true ? undefined : r);
      }
    };
    sock.on('data', onData);
    sock.once('close', onClose);
  });
}

/** A TCP connection, or why there is none. */
function tcpConnect(host: string, port: number, timeoutMs: number): Promise<{ sock?: net.Socket; error?: string }> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    sock.setTimeout(timeoutMs, () => {
      sock.destroy();
      resolve({ error: connectError(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' }), timeoutMs) });
    });
    sock.once('connect', () => {
      sock.setTimeout(0);
      resolve({ sock });
    });
    sock.once('error', (e: NodeJS.ErrnoException) => resolve({ error: connectError(e, timeoutMs) }));
  });
}

/**
 * IMAP on host:port: the greeting, `STARTTLS` (dovecot's `ssl = required` asks for it before
 * a login), then the handshake with `servername` as SNI; never rejects.
 */
async function imapStarttls(host: string, port: number, servername: string, opts: TlsProbeOptions): Promise<Handshake> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const c = await tcpConnect(host, port, timeoutMs);
  if (!c.sock) return { connected: false, error: c.error };
  const sock = c.sock;
  sock.on('error', () => undefined);
  try {
    const greeting = await readLines(sock, timeoutMs, (l) => (/^\* (OK|PREAUTH)\b/i.test(l) ? true : `not an IMAP greeting: ${JSON.stringify(l.slice(0, 80))}`));
    if (greeting) return { connected: true, error: greeting };
    sock.write('cm1 STARTTLS\r\n');
    const started = await readLines(sock, timeoutMs, (l) => {
      if (!l.startsWith('cm1 ')) return undefined;
      return /^cm1 OK\b/i.test(l) ? true : `STARTTLS refused: ${JSON.stringify(l.slice(0, 80))}`;
    });
    if (started) return { connected: true, error: started };
    return await tlsHandshake(host, port, servername, opts, sock);
  } finally {
    sock.destroy();
  }
}

/** An HTTP request to host:port, answered with a status line (any status: nginx redirects or serves challenges); never rejects. */
async function httpProbe(host: string, port: number, hostHeader: string, timeoutMs: number): Promise<{ connected: boolean; error?: string; status?: number }> {
  const c = await tcpConnect(host, port, timeoutMs);
  if (!c.sock) return { connected: false, error: c.error };
  const sock = c.sock;
  sock.on('error', () => undefined);
  try {
    sock.write(`GET /.well-known/acme-challenge/cmmigrate-probe HTTP/1.1\r\nHost: ${hostHeader}\r\nUser-Agent: cmmigrate\r\nConnection: close\r\n\r\n`);
    let status: number | undefined;
    const error = await readLines(sock, timeoutMs, (l) => {
      const m = /^HTTP\/1\.[01] (\d{3})\b/.exec(l);
      if (!m) return `not an HTTP answer: ${JSON.stringify(l.slice(0, 80))}`;
      status = Number(m[1]);
      return true;
    });
    return { connected: true, error: error ? `no HTTP answer: ${error}` : undefined, status };
  } finally {
    sock.destroy();
  }
}

// ---------------------------------------------------------------------------------------
// The check

async function probePort(port: MailPort, o: ServiceCheckOptions): Promise<PortResult> {
  const endpoint = o.endpoints?.[port] ?? formatHostPort(o.host.replace(/^\[(.*)\]$/, '$1'), port);
  const timeoutMs = o.timeoutMs ?? 10_000;
  const { host, port: p } = parseHostPort(endpoint, undefined, `the endpoint for port ${port}`);
  if (HTTP_PORTS.includes(port)) {
    const r = await httpProbe(host, p, o.mailDomain, timeoutMs);
    return { port, endpoint, open: r.connected, error: r.error, httpStatus: r.status };
  }
  if (!CERTIFICATE_PORTS.includes(port)) {
    const error = await tcpProbe(host, p, timeoutMs);
    return { port, endpoint, open: error === undefined, error };
  }
  const probe = { timeoutMs, ca: o.ca, now: o.now };
  const h = STARTTLS_PORTS.includes(port) ? await imapStarttls(host, p, o.mailDomain, probe) : await tlsHandshake(host, p, o.mailDomain, probe);
  if (h.certificate) return { port, endpoint, open: true, certificate: h.certificate };
  return { port, endpoint, open: h.connected, error: h.connected ? `${STARTTLS_PORTS.includes(port) ? 'no TLS after STARTTLS' : 'no TLS handshake'}: ${h.error}` : h.error };
}

/** Probes every port and describes what is wrong, without throwing. */
export async function probeServices(o: ServiceCheckOptions): Promise<ServiceReport> {
  const now = (o.now ?? Date.now)();
  const results = await Promise.all(MAIL_PORTS.map((p) => probePort(p, o)));
  const problems: string[] = [];
  const problemCodes: ErrorCode[] = [];
  const warnings: string[] = [];
  const add = (code: ErrorCode, text: string): void => {
    problemCodes.push(code);
    problems.push(text);
  };
  for (const r of results) {
    const at = `port ${r.port} (${PORT_NAMES[r.port]}) at ${r.endpoint}`;
    if (r.error) {
      add(!r.open ? 'step.port_closed' : HTTP_PORTS.includes(r.port) ? 'step.http_failed' : 'step.tls_failed', `${at}: ${r.error}`);
      continue;
    }
    const c = r.certificate;
    if (!c) continue;
    if (c.identityError) add('step.certificate_mismatch', `${at}: the certificate is not valid for ${o.mailDomain} (it names ${c.altNames.join(', ') || c.subject})`);
    if (c.daysLeft < 0 || c.validTo.getTime() <= now) add('step.certificate_expired', `${at}: the certificate expired on ${c.validTo.toISOString()}`);
    else if (c.validFrom.getTime() > now) add('step.certificate_expired', `${at}: the certificate is not valid before ${c.validFrom.toISOString()}`);
    else if (!c.trusted) add('step.certificate_untrusted', `${at}: the certificate is not trusted (${c.trustError}; issuer ${c.issuer})`);
    const w = c.daysLeft >= 0 ? expiryWarning(c, `the certificate on ${at}`, o.warnDays) : undefined;
    if (w) warnings.push(w);
  }
  return { host: o.host, mailDomain: o.mailDomain, results, problems, problemCodes, warnings, ok: problems.length === 0 };
}

const HINTS: Record<string, (host: string, domain: string) => string> = {
  'step.port_closed': (host) =>
    `check that postfix, dovecot and nginx run on ${host} (systemctl status postfix dovecot nginx) and that no firewall blocks those ports, then run ${RERUN}`,
  'step.tls_failed': (host) => `check the TLS setup of postfix and dovecot on ${host} (journalctl -u postfix -u dovecot), then run ${RERUN}`,
  'step.http_failed': (host) => `check nginx on ${host} (journalctl -u nginx; it serves port 80 for ACME challenges), then run ${RERUN}`,
  'step.certificate_mismatch': (host, domain) =>
    `${host} must present the relay's own certificate for ${domain}: check that /var/lib/acme (or the relay's certificate files) arrived with the final sync and that postfix and dovecot were restarted after it, then run ${RERUN}`,
  'step.certificate_expired': (host) => `renew the certificate on ${host} (acmetool reconcile), restart postfix and dovecot, then run ${RERUN}`,
  'step.certificate_untrusted': (host) =>
    `${host} presents a certificate that other servers will not trust: check that /var/lib/acme arrived with the final sync; for a relay with a self-signed certificate, allow it explicitly`,
};

/**
 * Probes every port and rejects with one CmError listing every problem (its code is the
 * first problem's: `step.port_closed`, `step.tls_failed`, `step.certificate_mismatch`,
 * `step.certificate_expired`, `step.certificate_untrusted`). Resolves with the report,
 * warnings included, when the host serves mail.
 */
export async function checkServices(o: ServiceCheckOptions): Promise<ServiceReport> {
  const report = await probeServices(o);
  if (!report.ok) {
    const code = report.problemCodes[0];
    const who = `the ${o.side ?? 'new'} host ${o.host}`;
    throw new CmError(code, `${who} does not serve mail for ${o.mailDomain} as it should: ${report.problems.join('; ')}`, {
      hint: HINTS[code](who, o.mailDomain),
      details: { host: o.host, problems: report.problems, codes: report.problemCodes },
    });
  }
  return report;
}
