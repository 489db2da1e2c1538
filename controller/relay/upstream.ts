/**
 * What chatmail/relay's deploy does with systemd units and ports, as data with the upstream
 * file each fact comes from (release 1.12.0 and main; facts in /work/notes/upstream-facts.md).
 * Pure: callers pass what the relay's chatmail.ini decides (TLS mode, iroh, mtail, ports).
 * Deployers are in cmdeploy/src/cmdeploy/deployers.py unless a fact names another file.
 */
import type { TlsMode } from './tls-mode';

/** The roots a move carries that a unit can write while it runs. */
export type CarriedRoot = 'mailboxes' | 'dkim' | 'acme' | 'spool' | 'tls-files';

/** What a relay's chatmail.ini decides about its units and ports. */
export interface RelayShape {
  tlsMode: TlsMode;
  /** An IPv4-literal mail_domain: no OpendkimDeployer. */
  ipv4: boolean;
  /** `iroh_relay` unset in the ini (chatmaild config.py `enable_iroh_relay`). */
  enableIroh: boolean;
  /** `mtail_address` set in the ini. */
  mtail: boolean;
}

export interface UnitFact {
  /** Full systemd unit name. */
  unit: string;
  /** The upstream deployer and file that installs it. */
  source: string;
  /** Oneshot services run to completion: stopping one in progress must wait for it. */
  kind: 'daemon' | 'oneshot' | 'timer' | 'path';
  /** Carried roots it writes while it runs (or, for a timer, that the service it starts writes). */
  writes: readonly CarriedRoot[];
  /** What the activate stage does with it (`ensure_service`). */
  activate: 'start' | 'stop';
  /** Started by its Debian package's postinst during the install stage (not blocked by policy-rc.d). */
  startedByPackage?: boolean;
  /** Stopped and disabled by `cmdeploy run --disable-mail`, at the end of its activate stage. */
  stoppedByDisableMail?: boolean;
  /** Whether this relay has the unit at all. */
  present(shape: RelayShape): boolean;
}

const always = (): boolean => true;
const acmeMode = (s: RelayShape): boolean => s.tlsMode === 'acme';

const FILTERMAIL = 'cmdeploy/src/cmdeploy/filtermail/deployer.py FiltermailDeployer';
const ACMETOOL = 'cmdeploy/src/cmdeploy/acmetool/__init__.py AcmetoolDeployer';
const VENV = 'ChatmailVenvDeployer';
const SERVICE_DIR = 'cmdeploy/src/cmdeploy/service';

/** One row of the table below: unit, source, kind, what it writes, what activate does, and the rest of UnitFact. */
type UnitRow = [string, string, UnitFact['kind'], readonly CarriedRoot[], UnitFact['activate'], Partial<Pick<UnitFact, 'present' | 'startedByPackage' | 'stoppedByDisableMail'>>?];

/** Every unit upstream's deploy installs, enables, starts or stops, in deploy order. */
export const UPSTREAM_UNITS: readonly UnitFact[] = (
  [
    ['filtermail.service', FILTERMAIL, 'daemon', ['mailboxes'], 'start'],
    ['filtermail-incoming.service', FILTERMAIL, 'daemon', ['mailboxes'], 'start'],
    // LMTP transport into dovecot: it delivers into mailboxes.
    ['filtermail-transport.service', FILTERMAIL, 'daemon', ['mailboxes'], 'start'],
    ['unbound.service', 'UnboundDeployer (installed under policy-rc.d)', 'daemon', [], 'start'],
    ['turnserver.service', `TurnDeployer, ${SERVICE_DIR}/turnserver.service.f`, 'daemon', [], 'start'],
    // IrohDeployer.activate: ensure_service("iroh-relay.service", enabled=enable_iroh_relay): running
    // stays True, so it is started either way; only enabled when the ini leaves iroh_relay unset.
    ['iroh-relay.service', 'IrohDeployer', 'daemon', [], 'start'],
    ['acmetool-redirector.service', ACMETOOL, 'daemon', [], 'start', { present: acmeMode }],
    ['acmetool-reconcile.service', ACMETOOL, 'oneshot', ['acme'], 'stop', { present: acmeMode }],
    ['acmetool-reconcile.timer', ACMETOOL, 'timer', ['acme'], 'start', { present: acmeMode }],
    // Reads the external files and reloads dovecot and nginx when the certificate changes.
    ['tls-cert-reload.path', 'cmdeploy/src/cmdeploy/external/deployer.py ExternalTlsDeployer', 'path', [], 'start', { present: (s) => s.tlsMode === 'external' }],
    ['doveauth.service', `${VENV}, cmdeploy/src/cmdeploy/basedeploy.py activate_remote_units`, 'daemon', ['mailboxes'], 'start'],
    ['chatmail-metadata.service', VENV, 'daemon', ['mailboxes'], 'start'],
    ['lastlogin.service', VENV, 'daemon', ['mailboxes'], 'start'],
    // activate_remote_units: chatmail-expire and chatmail-fsreport get running=False, enabled=False.
    ['chatmail-expire.service', `${VENV}, ${SERVICE_DIR}/chatmail-expire.service.f`, 'oneshot', ['mailboxes'], 'stop'],
    ['chatmail-expire.timer', `${VENV}, ${SERVICE_DIR}/chatmail-expire.timer.f (daily 00:02)`, 'timer', ['mailboxes'], 'start'],
    ['chatmail-fsreport.service', `${VENV}, ${SERVICE_DIR}/chatmail-fsreport.service.f`, 'oneshot', [], 'stop'],
    ['chatmail-fsreport.timer', `${VENV}, ${SERVICE_DIR}/chatmail-fsreport.timer.f (daily 08:02, Persistent)`, 'timer', [], 'start'],
    ['mta-sts-daemon.service', 'MtastsDeployer (removed)', 'daemon', [], 'stop'],
    // The socket in /var/spool/postfix/opendkim once configured; started by its package at install.
    ['opendkim.service', 'cmdeploy/src/cmdeploy/opendkim/deployer.py OpendkimDeployer', 'daemon', ['spool'], 'start', { startedByPackage: true, present: (s) => !s.ipv4 }],
    ['dovecot.service', 'cmdeploy/src/cmdeploy/dovecot/deployer.py DovecotDeployer (installed under policy-rc.d)', 'daemon', ['mailboxes'], 'start', { stoppedByDisableMail: true }],
    ['postfix.service', 'cmdeploy/src/cmdeploy/postfix/deployer.py PostfixDeployer', 'daemon', ['spool'], 'start', { startedByPackage: true, stoppedByDisableMail: true }],
    // The web /new endpoint (chatmaild newemail.py) only makes up credentials; the account
    // appears at its first login, through dovecot and doveauth. Debian's fcgiwrap package starts
    // fcgiwrap.socket when installed.
    ['fcgiwrap.service', 'FcgiwrapDeployer', 'daemon', [], 'start', { startedByPackage: true }],
    ['nginx.service', 'cmdeploy/src/cmdeploy/nginx/deployer.py NginxDeployer (installed under policy-rc.d)', 'daemon', [], 'start'],
    ['mtail.service', 'cmdeploy/src/cmdeploy/mtail/deployer.py MtailDeployer (running iff mtail_address)', 'daemon', [], 'start', { present: (s) => s.mtail }],
  ] satisfies readonly UnitRow[]
).map(([unit, source, kind, writes, activate, more]: UnitRow): UnitFact => ({ unit, source, kind, writes, activate, present: always, ...more }));

/** The units of this relay, in deploy order. */
export function relayUnits(shape: RelayShape): UnitFact[] {
  return UPSTREAM_UNITS.filter((u) => u.present(shape));
}

export interface UnitStop {
  unit: string;
  /** `stop-and-wait`: a oneshot run may be in progress; `systemctl stop` waits for it to end, then check it is inactive. */
  how: 'stop' | 'stop-and-wait';
  why: string;
}

/**
 * Step 3 on the old host: what `--disable-mail` leaves running that can still write a carried
 * root (or reload a service reading one), in the order to stop it: timers and path units
 * first (no new run starts), then the oneshots they start (wait for a run in progress), then
 * daemons. postfix and dovecot are not listed: --disable-mail stops them.
 */
export function unitsToStopAtStep3(shape: RelayShape): UnitStop[] {
  const units = relayUnits(shape).filter((u) => !u.stoppedByDisableMail);
  const order = { timer: 0, path: 0, oneshot: 1, daemon: 2 } as const;
  const picked = units.filter((u) => u.writes.length > 0 || u.unit === 'tls-cert-reload.path' || u.unit === 'chatmail-fsreport.timer');
  return picked
    .map((u, i) => ({ u, i }))
    .sort((a, b) => order[a.u.kind] - order[b.u.kind] || a.i - b.i)
    .map(({ u }) => ({
      unit: u.unit,
      how: u.kind === 'oneshot' ? 'stop-and-wait' : 'stop',
      why: u.writes.length > 0 ? `writes ${u.writes.join(', ')} (${u.source})` : `starts runs against the relay's state (${u.source})`,
    }));
}

/**
 * The new host between step 2 and step 6: units that must not run there, because they write
 * a carried root. Step 2 itself starts postfix and opendkim (`startedByPackage`); the others
 * run only if the host was deployed before.
 */
export function unitsInertOnNewHost(shape: RelayShape): UnitFact[] {
  return relayUnits(shape).filter((u) => u.writes.length > 0);
}

/** Units an activate run leaves running (step 6 checks them), iroh and mtail by the ini. */
export function unitsActivateStarts(shape: RelayShape): string[] {
  return relayUnits(shape)
    .filter((u) => u.activate === 'start')
    .map((u) => u.unit);
}

/**
 * Units whose drop-ins step 2 writes under /etc/systemd/system: an activate-only run never
 * runs `daemon-reload` (basedeploy.py Deployer.ensure_service, daemon_reload is set only by
 * a file changed in the same run), so reload and restart these after step 6.
 */
export function unitsWithStep2DropIns(shape: RelayShape): string[] {
  // dovecot/deployer.py: dovecot.service.d/10_restart.conf; postfix/deployer.py:
  // postfix@.service.d/10_restart.conf; opendkim/deployer.py: opendkim.service.d/10-prevent-memory-leak.conf
  return ['dovecot.service', 'postfix.service', ...(shape.ipv4 ? [] : ['opendkim.service'])];
}

export interface PortCheck {
  port: number;
  /** Process names (as `ss -lptn` shows them) the deploy accepts on that port. */
  owners: readonly string[];
}

/** The ini keys that move the relay's local ports, with chatmaild's defaults (config.py). */
export const PORT_KEYS = {
  postfix_reinject_port: 10025,
  postfix_reinject_port_incoming: 10026,
  filtermail_smtp_port: 10080,
  filtermail_smtp_port_incoming: 10081,
  filtermail_http_port_incoming: 10082,
  filtermail_lmtp_port_transport: 10083,
} as const;

function portOf(params: Readonly<Record<string, string>>, key: keyof typeof PORT_KEYS): number {
  const v = params[key]?.trim();
  return v ? Number(v) : PORT_KEYS[key];
}

/**
 * The deploy's port check (deployers.py `deploy_chatmail`, `port_services`): every
 * `cmdeploy run` fails with "Deploy failed: port P is occupied by: NAME" when a TCP listener
 * other than `owners` holds one of these on the host it deploys (skipped in containers).
 */
export function deployPortChecks(params: Readonly<Record<string, string>>, tlsMode: TlsMode): PortCheck[] {
  const smtpd = ['master', 'smtpd'];
  return [
    { port: 25, owners: smtpd },
    { port: 53, owners: ['unbound'] },
    ...(tlsMode === 'acme' ? [{ port: 402, owners: ['acmetool'] }] : []),
    { port: 143, owners: ['imap-login', 'dovecot'] },
    { port: 80, owners: ['acmetool', 'nginx'] },
    { port: 443, owners: ['nginx'] },
    { port: 465, owners: smtpd },
    { port: 587, owners: smtpd },
    { port: 993, owners: ['dovecot', 'imap-login'] },
    { port: 3340, owners: ['iroh-relay'] },
    { port: 3903, owners: ['mtail'] },
    { port: 3904, owners: ['dovecot', 'stats'] },
    { port: 8443, owners: ['nginx'] },
    { port: portOf(params, 'postfix_reinject_port'), owners: smtpd },
    { port: portOf(params, 'postfix_reinject_port_incoming'), owners: smtpd },
    { port: portOf(params, 'filtermail_smtp_port'), owners: ['filtermail'] },
    { port: portOf(params, 'filtermail_smtp_port_incoming'), owners: ['filtermail'] },
    { port: portOf(params, 'filtermail_http_port_incoming'), owners: ['filtermail'] },
    { port: portOf(params, 'filtermail_lmtp_port_transport'), owners: ['filtermail'] },
  ];
}

/**
 * Why an agent (or anything else of ours) must not listen on `port` of a relay host, or
 * undefined when it may. Uses the default ini unless `params` is given; 402 is counted
 * whatever the TLS mode (a relay can change to ACME later).
 */
export function relayPortConflict(port: number, params: Readonly<Record<string, string>> = {}): string | undefined {
  const hit = deployPortChecks(params, 'acme').find((c) => c.port === port);
  if (!hit) return undefined;
  return `port ${port} belongs to the relay (${hit.owners.join('/')}): cmdeploy run refuses to deploy while another program listens on it (chatmail/relay cmdeploy/src/cmdeploy/deployers.py, deploy_chatmail)`;
}

export interface ServedPort {
  port: number;
  proto: 'tcp' | 'udp';
  /** How a check reaches TLS on it. */
  tls: 'implicit' | 'smtp-starttls' | 'imap-starttls' | 'none';
  /** Unit serving it. */
  unit: string;
  /** `connect`: probe it with a connection; `unit`: UDP, check that its unit runs instead. */
  check: 'connect' | 'unit';
  source: string;
}

/**
 * The ports clients and other relays use, for step 6's check and for the bridge: postfix
 * master.cf (25, 587 STARTTLS, 465 wrapper), dovecot (143 with `ssl = required`, so STARTTLS;
 * 993), nginx (443 ALPN multiplexer, 80 with ACME challenges proxied to acmetool in acme mode),
 * chatmail-turn 3478/udp (doc/source/overview.rst). iroh-relay listens on 3340 behind nginx:
 * its unit is checked when the ini enables it.
 */
export function servedPorts(shape: RelayShape): ServedPort[] {
  const ports: ServedPort[] = [
    { port: 25, proto: 'tcp', tls: 'smtp-starttls', unit: 'postfix.service', check: 'connect', source: 'cmdeploy/src/cmdeploy/postfix/master.cf.j2 smtp' },
    { port: 465, proto: 'tcp', tls: 'implicit', unit: 'postfix.service', check: 'connect', source: 'cmdeploy/src/cmdeploy/postfix/master.cf.j2 smtps' },
    { port: 587, proto: 'tcp', tls: 'smtp-starttls', unit: 'postfix.service', check: 'connect', source: 'cmdeploy/src/cmdeploy/postfix/master.cf.j2 submission' },
    { port: 143, proto: 'tcp', tls: 'imap-starttls', unit: 'dovecot.service', check: 'connect', source: 'cmdeploy/src/cmdeploy/dovecot/dovecot.conf.j2 (ssl = required)' },
    { port: 993, proto: 'tcp', tls: 'implicit', unit: 'dovecot.service', check: 'connect', source: 'cmdeploy/src/cmdeploy/dovecot/dovecot.conf.j2' },
    { port: 443, proto: 'tcp', tls: 'implicit', unit: 'nginx.service', check: 'connect', source: 'cmdeploy/src/cmdeploy/nginx/nginx.conf.j2 (ssl_preread ALPN map)' },
    { port: 80, proto: 'tcp', tls: 'none', unit: 'nginx.service', check: 'connect', source: 'cmdeploy/src/cmdeploy/nginx/nginx.conf.j2 (listen 80; acme-challenge to 127.0.0.1:402)' },
    { port: 3478, proto: 'udp', tls: 'none', unit: 'turnserver.service', check: 'unit', source: 'TurnDeployer; doc/source/overview.rst' },
  ];
  if (shape.enableIroh) {
    ports.push({ port: 3340, proto: 'tcp', tls: 'none', unit: 'iroh-relay.service', check: 'unit', source: 'IrohDeployer, cmdeploy/src/cmdeploy/iroh-relay.toml' });
  }
  return ports;
}

/** The TCP ports a bridge passes from the old host to the new one. */
export function bridgedTcpPorts(shape: RelayShape): number[] {
  return servedPorts(shape)
    .filter((p) => p.proto === 'tcp' && p.check === 'connect')
    .map((p) => p.port);
}
