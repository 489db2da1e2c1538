/**
 * The bridge's limits and their defaults. Every bridged connection reaches the new host
 * from the old host's address, so the new relay's per-client limits count all of them as
 * one client; the defaults keep the bridge below those limits, so the bridge refuses
 * (cleanly, counted) before the relay would. Findings: /work/notes/bridge-limits.md.
 */
import { CmError } from '../../proto/errors';

/** How far the bridge lets connections go; all counts are concurrent connections. */
export interface BridgeLimits {
  /** Open bridged connections over every port and address together. */
  maxConnections: number;
  /** Open bridged connections from one client address (IPv4-mapped IPv6 counted as IPv4). */
  maxPerSource: number;
  /** Open bridged connections on one port (all client addresses), where the relay limits them. */
  perPort: Record<number, number>;
  /** A connection with no byte either way for this long is closed (IMAP IDLE must survive). */
  idleTimeoutMs: number;
  /** How long to wait for the new host to accept before the client is closed. */
  connectTimeoutMs: number;
  /** Buffer per socket and direction, in bytes: bounds what one connection holds in memory. */
  highWaterMark: number;
}

/**
 * Postfix's smtpd_client_connection_count_limit default (postconf(5): 50). Upstream's
 * `smtp inet` service on port 25 (cmdeploy/src/cmdeploy/postfix/master.cf.j2) does not
 * override it, so the new relay's anvil allows 50 concurrent port-25 connections from the
 * old host's address; the bridge stays at 40.
 */
const POSTFIX_DEFAULT_CLIENT_CONNECTION_COUNT_LIMIT = 50;

/**
 * Upstream's submission (587) and smtps (465) services set
 * `smtpd_client_connection_count_limit={{ config.max_smtp_connections // 5 }}`
 * (cmdeploy/src/cmdeploy/postfix/master.cf.j2), with `max_smtp_connections = 1000` by
 * default (chatmaild/src/chatmaild/config.py, ini/chatmail.ini.f): 200 per client address.
 */
const UPSTREAM_DEFAULT_MAX_SMTP_CONNECTIONS = 1000;

/** Three quarters of a relay limit, so clients that reach the new host directly keep headroom. */
function below(limit: number): number {
  return Math.max(1, Math.floor((limit * 3) / 4));
}

/**
 * Per-port limits under the new relay's per-client limits, for a relay whose chatmail.ini
 * sets `max_smtp_connections` (default 1000). Ports without a per-client connection limit
 * upstream (143, 993: dovecot limits per user and address, not per address; 443 and 80:
 * nginx, whose stream proxy already hands 465/993 connections over from 127.0.0.1) are left
 * to the global limit.
 */
export function relayPortLimits(maxSmtpConnections = UPSTREAM_DEFAULT_MAX_SMTP_CONNECTIONS): Record<number, number> {
  const submission = below(Math.floor(maxSmtpConnections / 5));
  return { 25: below(POSTFIX_DEFAULT_CLIENT_CONNECTION_COUNT_LIMIT), 465: submission, 587: submission };
}

/** The defaults: below the upstream relay's per-client limits (see relayPortLimits). */
export const DEFAULT_LIMITS: Readonly<BridgeLimits> = Object.freeze({
  // Two descriptors per connection; dovecot's own imap process_limit upstream is 10000
  // (max_imap_connections, dovecot.conf.j2), far above what a relay's stragglers need.
  maxConnections: 4000,
  // Carrier-grade NAT puts many users behind one address; one address still cannot take
  // more than a fortieth of the bridge.
  maxPerSource: 100,
  perPort: relayPortLimits(),
  // RFC 2177: clients re-issue IDLE at least every 29 minutes, servers may log out after 30.
  idleTimeoutMs: 31 * 60_000,
  connectTimeoutMs: 10_000,
  highWaterMark: 64 * 1024,
});

function positiveInt(name: string, v: unknown, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    throw new CmError('bridge.bad_limits', `bridge limit ${name} must be an integer from 1 to ${max}, got ${JSON.stringify(v)}`, {
      hint: 'pass limits as whole numbers (milliseconds for timeouts, bytes for highWaterMark), or leave them out for the defaults',
    });
  }
  return v;
}

/** Defaults overlaid with what was given, each value checked; `perPort` replaces the default map when given. */
export function resolveLimits(given: Partial<BridgeLimits> = {}): BridgeLimits {
  const merged = { ...DEFAULT_LIMITS, ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) };
  const perPort: Record<number, number> = {};
  for (const [port, limit] of Object.entries(merged.perPort ?? {})) {
    positiveInt(`perPort port`, Number(port), 65535);
    perPort[Number(port)] = positiveInt(`perPort[${port}]`, limit, 1_000_000);
  }
  return {
    maxConnections: positiveInt('maxConnections', merged.maxConnections, 1_000_000),
    maxPerSource: positiveInt('maxPerSource', merged.maxPerSource, 1_000_000),
    perPort,
    idleTimeoutMs: positiveInt('idleTimeoutMs', merged.idleTimeoutMs, 7 * 24 * 3_600_000),
    connectTimeoutMs: positiveInt('connectTimeoutMs', merged.connectTimeoutMs, 600_000),
    highWaterMark: positiveInt('highWaterMark', merged.highWaterMark, 16 * 1024 * 1024),
  };
}
