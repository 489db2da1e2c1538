/**
 * The network face of a stand-in relay host: SMTP on 25 and 587, SMTPS on 465, IMAPS on 993
 * and HTTPS on 443, each listening only while the unit that serves it is active in the
 * host state (25, 465, 587: postfix; 993: dovecot; 443: nginx). The unit files are watched
 * (inotify, and a poll as a fallback); a unit file rewritten while active is a restart: the
 * ports stay bound, open connections drop and TLS reads its files again. What is applied is
 * published in `<hostState>/relay-services.json`, so that the cmdeploy stand-in can return
 * only once the ports follow, as `systemctl start` returns once a service is up. A
 * `systemctl start` by the host tools stand-in is followed within milliseconds, not waited for.
 *
 * A TLS listener reads the certificate and key when it starts, as the real daemons do, from
 * the host's root: `<root>/var/lib/acme/live/<mailDomain>/{fullchain,privkey}`. When they
 * are missing or unusable it presents a self-signed "snakeoil" certificate for the host
 * name instead, as Debian's defaults do, so a new host presents the relay's certificate only
 * if the final sync carried it and the service started after that.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { selfSignedCertificate, type TestCertificate } from './test-certs';

export type ServicePort = 25 | 465 | 587 | 143 | 993 | 443 | 80;
export const SERVICE_PORTS: readonly ServicePort[] = [25, 465, 587, 143, 993, 443, 80];

interface PortSpec {
  unit: string;
  /** Implicit TLS: the handshake comes first. */
  tls: boolean;
  /** IMAP STARTTLS: plain until the client asks (dovecot's 143, `ssl = required`). */
  starttls?: boolean;
  protocol: 'smtp' | 'imap' | 'http';
}

/** Which unit serves a port, and how (chatmail/relay postfix master.cf, dovecot.conf, nginx.conf). */
export const PORT_SPECS: Record<ServicePort, PortSpec> = {
  25: { unit: 'postfix', tls: false, protocol: 'smtp' },
  587: { unit: 'postfix', tls: false, protocol: 'smtp' },
  465: { unit: 'postfix', tls: true, protocol: 'smtp' },
  143: { unit: 'dovecot', tls: false, starttls: true, protocol: 'imap' },
  993: { unit: 'dovecot', tls: true, protocol: 'imap' },
  443: { unit: 'nginx', tls: true, protocol: 'http' },
  80: { unit: 'nginx', tls: false, protocol: 'http' },
};

export interface RelayServicesOptions {
  /** The host state directory: `<hostState>/units/<unit>`. */
  hostState: string;
  /** The host's root, where the certificate is read. */
  root: string;
  /**
   * Where under the root the daemons read the certificate and key (chatmaild config.py's
   * tls_cert_path/tls_key_path); default the ACME ones, `/var/lib/acme/live/<domain>/`.
   */
  certPaths?: { cert: string; key: string };
  mailDomain: string;
  /** `ip:port` to listen on, per service port. */
  endpoints: Record<ServicePort, string>;
  /** Ports that never listen (a fault); change later with setClosed. */
  closed?: number[];
  /** Default 100 ms. */
  pollMs?: number;
  /** The name on the snakeoil certificate. Default "debian". */
  hostname?: string;
}

export interface RelayServices {
  endpoints: Record<ServicePort, string>;
  /** The ports listening right now. */
  listening(): ServicePort[];
  /** Where a listening TLS port's certificate came from. */
  certificateSource(port: ServicePort): 'root' | 'snakeoil' | undefined;
  /** Replaces the list of ports that never listen; applied at once. */
  setClosed(ports: number[]): Promise<void>;
  /** Applies the unit states now instead of at the next poll. */
  refresh(): Promise<void>;
  stop(): Promise<void>;
}

interface Listener {
  server: net.Server;
  sockets: Set<net.Socket>;
  /** The unit file's identity (inode and mtime) when it started: a change is a restart. */
  version: string;
  source?: 'root' | 'snakeoil';
  /** STARTTLS: replaces the certificate the next upgrade presents (a restart). */
  setContext?: (ctx: tls.SecureContext) => void;
}

const MAX_LINE = 64 * 1024;

/**
 * `<hostState>/relay-services.json`: `{ pid, applied: { <unit>: "<ino>:<mtimeMs>" | null } }`,
 * the unit file versions the listeners follow now (null: stopped).
 */
export const APPLIED_FILE = 'relay-services.json';

/** Starts polling the host state; resolves once the current unit states are applied. */
export async function startRelayServices(o: RelayServicesOptions): Promise<RelayServices> {
  const listeners = new Map<ServicePort, Listener>();
  let closed = new Set(o.closed ?? []);
  let snakeoil: Promise<TestCertificate> | undefined;
  let stopped = false;
  let queue: Promise<void> = Promise.resolve();

  const unitVersion = (unit: string): string | undefined => {
    const file = path.join(o.hostState, 'units', unit);
    try {
      if (fs.readFileSync(file, 'utf8').trim() !== 'active') return undefined;
      const st = fs.statSync(file);
      return `${st.ino}:${st.mtimeMs}`;
    } catch {
      return undefined;
    }
  };

  const credentials = async (): Promise<{ cert: string; key: string; source: 'root' | 'snakeoil' }> => {
    const paths = o.certPaths ?? { cert: `/var/lib/acme/live/${o.mailDomain}/fullchain`, key: `/var/lib/acme/live/${o.mailDomain}/privkey` };
    try {
      const cert = fs.readFileSync(path.join(o.root, paths.cert), 'utf8');
      const key = fs.readFileSync(path.join(o.root, paths.key), 'utf8');
      tls.createSecureContext({ cert, key }); // throws on a pair the daemon could not use
      return { cert, key, source: 'root' };
    } catch {
      snakeoil ??= selfSignedCertificate({ dnsNames: [o.hostname ?? 'debian'] });
      return { ...(await snakeoil), source: 'snakeoil' };
    }
  };

  const open = async (port: ServicePort, version: string): Promise<void> => {
    const spec = PORT_SPECS[port];
    const sockets = new Set<net.Socket>();
    const onConnection = (socket: net.Socket): void => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
      socket.setTimeout(30_000, () => socket.destroy());
      converse(socket, spec.protocol, o.mailDomain, spec.starttls ? () => starttlsContext : undefined);
    };
    let server: net.Server;
    let source: Listener['source'];
    // Read once per start, as dovecot reads its ssl_cert then.
    let starttlsContext: tls.SecureContext | undefined;
    if (spec.starttls) {
      const c = await credentials();
      source = c.source;
      starttlsContext = tls.createSecureContext({ cert: c.cert, key: c.key });
    }
    if (spec.tls) {
      const c = await credentials();
      source = c.source;
      server = tls.createServer({ cert: c.cert, key: c.key }, onConnection);
      server.on('tlsClientError', () => undefined);
    } else {
      server = net.createServer(onConnection);
    }
    const { host, port: p } = splitEndpoint(o.endpoints[port]);
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false)); // e.g. still in use: the next poll tries again
      server.listen(p, host, () => resolve(true));
    });
    if (ok) listeners.set(port, { server, sockets, version, source, setContext: spec.starttls ? (ctx) => (starttlsContext = ctx) : undefined });
  };

  const close = async (port: ServicePort): Promise<void> => {
    const l = listeners.get(port);
    if (!l) return;
    listeners.delete(port);
    const done = new Promise<void>((resolve) => l.server.close(() => resolve()));
    for (const s of l.sockets) s.destroy();
    await done;
  };

  /** A restart: the listener stays bound (as systemd's socket hand-over would), connections drop, TLS reads its files again. */
  const restart = async (l: Listener, version: string): Promise<void> => {
    for (const s of l.sockets) s.destroy();
    if (l.server instanceof tls.Server) {
      const c = await credentials();
      l.server.setSecureContext({ cert: c.cert, key: c.key });
      l.source = c.source;
    } else if (l.setContext) {
      const c = await credentials();
      l.setContext(tls.createSecureContext({ cert: c.cert, key: c.key }));
      l.source = c.source;
    }
    l.version = version;
  };

  const appliedFile = path.join(o.hostState, APPLIED_FILE);
  let appliedText = '';
  const sync = async (): Promise<void> => {
    const applied: Record<string, string | null> = {};
    for (const port of SERVICE_PORTS) {
      const unit = PORT_SPECS[port].unit;
      const unitVer = stopped ? undefined : unitVersion(unit);
      applied[unit] = unitVer ?? null;
      const want = closed.has(port) ? undefined : unitVer;
      const l = listeners.get(port);
      if (l && want === undefined) await close(port);
      else if (l && want !== undefined && l.version !== want) await restart(l, want);
      else if (!l && want !== undefined) await open(port, want);
    }
    // What is applied, for the cmdeploy stand-in to wait on, as systemctl waits for a unit to start.
    if (stopped) {
      fs.rmSync(appliedFile, { force: true });
      return;
    }
    const text = JSON.stringify({ pid: process.pid, applied });
    if (text !== appliedText) {
      fs.writeFileSync(`${appliedFile}.tmp`, text);
      fs.renameSync(`${appliedFile}.tmp`, appliedFile);
      appliedText = text;
    }
  };
  // One sync at a time; events while one waits to start join it.
  let next: Promise<void> | undefined;
  const serialized = (): Promise<void> => {
    if (next) return next;
    const run = queue.then(() => {
      next = undefined;
      return sync();
    });
    next = run;
    queue = run.catch(() => undefined);
    return run;
  };

  fs.mkdirSync(path.join(o.hostState, 'units'), { recursive: true });
  await serialized();
  // inotify for a prompt reaction; the poll for anything it misses.
  const watcher = fs.watch(path.join(o.hostState, 'units'), () => void serialized());
  watcher.on('error', () => undefined);
  const timer = setInterval(() => void serialized(), o.pollMs ?? 100);
  return {
    endpoints: o.endpoints,
    listening: () => SERVICE_PORTS.filter((p) => listeners.has(p)),
    certificateSource: (port) => listeners.get(port)?.source,
    async setClosed(ports) {
      closed = new Set(ports);
      await serialized();
    },
    refresh: serialized,
    async stop() {
      stopped = true;
      clearInterval(timer);
      watcher.close();
      await serialized();
    },
  };
}

function splitEndpoint(endpoint: string): { host: string; port: number } {
  const i = endpoint.lastIndexOf(':');
  return { host: endpoint.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(endpoint.slice(i + 1)) };
}

/** Just enough of each protocol for a client that checks the service answers. */
function converse(socket: net.Socket, protocol: PortSpec['protocol'], domain: string, starttls?: () => tls.SecureContext | undefined, greet = true): void {
  const send = (s: string): void => {
    if (!socket.destroyed) socket.write(s);
  };
  if (greet && protocol === 'smtp') send(`220 ${domain} ESMTP\r\n`);
  // Dovecot with `ssl = required` offers STARTTLS and LOGINDISABLED on its plain port.
  if (greet && protocol === 'imap') send(`* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+${starttls ? ' STARTTLS LOGINDISABLED' : ' AUTH=PLAIN'}] Dovecot ready.\r\n`);
  let buf = '';
  socket.setEncoding('utf8');
  const onData = (d: string): void => {
    buf += d;
    if (buf.length > MAX_LINE) return void socket.destroy();
    if (protocol === 'http') {
      if (!buf.includes('\r\n\r\n')) return;
      const body = `<html><body>${domain}</body></html>\n`;
      socket.end(`HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (protocol === 'smtp') {
        const verb = line.split(' ')[0].toUpperCase();
        if (verb === 'QUIT') return void socket.end('221 2.0.0 Bye\r\n');
        if (verb === 'EHLO') send(`250-${domain}\r\n250-PIPELINING\r\n250 8BITMIME\r\n`);
        else if (verb === 'HELO') send(`250 ${domain}\r\n`);
        else if (verb === 'NOOP') send('250 2.0.0 Ok\r\n');
        else send('502 5.5.2 Error: command not recognized\r\n');
      } else {
        const [tag, cmd = ''] = line.split(' ');
        if (cmd.toUpperCase() === 'STARTTLS' && starttls?.()) {
          // Upgrade in place and go on with the same conversation, without a new greeting.
          socket.removeListener('data', onData);
          send(`${tag} OK Begin TLS negotiation now.\r\n`);
          const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: starttls() });
          secure.on('error', () => secure.destroy());
          converse(secure, protocol, domain, undefined, false);
          return;
        }
        if (cmd.toUpperCase() === 'LOGOUT') return void socket.end(`* BYE Logging out\r\n${tag} OK Logout completed.\r\n`);
        if (cmd.toUpperCase() === 'NOOP') send(`${tag} OK NOOP completed.\r\n`);
        else send(`${tag} BAD Error in IMAP command received by server.\r\n`);
      }
    }
  };
  socket.on('data', onData);
}
