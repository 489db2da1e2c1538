/**
 * What the probe script found on a host, and the checks made on it before anything is
 * changed: Debian 12 or 13, systemd as init, root, a usable node, a free port. Each
 * failed check is a CmError that names the host, says what is wrong and what to do.
 */
import * as net from 'node:net';
import { CmError, ExitCode, RERUN, type ErrorCode } from '../proto';
import type { SshTarget } from './ssh';

/** Debian releases the relay (and so cmmigrate) supports. */
export const DEBIAN_RELEASES = ['12', '13'];
/** The oldest Node.js the agent runs on: Debian 12's nodejs. */
export const MIN_NODE: readonly [number, number, number] = [18, 19, 0];

export interface FileState {
  sha256: string;
  mode: number;
  uid: number;
  gid: number;
}

export interface HostFacts {
  uid: number;
  hostname: string;
  osRelease: boolean;
  os: { id: string; versionId: string; prettyName: string };
  /** First line of `systemctl --version`, or undefined without systemctl. */
  systemctl?: string;
  node?: { path: string; version: string };
  apt: boolean;
  dirs: { dir: boolean; tls: boolean; state: boolean };
  /** The packages install-agent installed earlier (the marker file). */
  packages: string[];
  files: Record<string, FileState>;
  /** What `systemctl is-active` says of the unit ('' without systemctl). */
  active: string;
  /** systemctl says that systemd is not running (a host not booted with it: a container). */
  systemdDown: boolean;
  /** The unit is enabled (its multi-user.target.wants link exists). */
  enabled: boolean;
  /** --listen of the installed unit. */
  unitListen?: string;
  /** Addresses with a listening TCP socket on the agent's port. */
  listeners: string[];
}

/** `key=value` lines, in order (a key may repeat). */
export function parseLines(stdout: string): [string, string][] {
  const out: [string, string][] = [];
  for (const line of stdout.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out.push([line.slice(0, i), line.slice(i + 1)]);
  }
  return out;
}

/** The first value of `key`, or undefined. */
export function valueOf(lines: [string, string][], key: string): string | undefined {
  return lines.find(([k]) => k === key)?.[1];
}

/** An address of /proc/net/tcp{,6} (hex, host byte order per 32-bit word) as text. */
export function decodeProcAddress(hex: string): string {
  const words = hex.match(/.{8}/g) ?? [];
  const bytes = Buffer.concat(words.map((w) => Buffer.from(w, 'hex').reverse()));
  if (bytes.length === 4) return [...bytes].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  const v6 = groups.join(':');
  // Normalise through the URL parser (compresses zeros, renders v4-mapped addresses).
  const norm = new URL(`http://[${v6}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(norm);
  if (mapped) {
    const a = parseInt(mapped[1], 16);
    const b = parseInt(mapped[2], 16);
    return `::ffff:${a >> 8}.${a & 255}.${b >> 8}.${b & 255}`;
  }
  return norm;
}

export function parseProbe(stdout: string): HostFacts {
  const lines = parseLines(stdout);
  const v = (k: string): string => valueOf(lines, k) ?? '';
  const files: Record<string, FileState> = {};
  for (const [k, val] of lines) {
    if (!k.startsWith('file_')) continue;
    const [sha256, mode, uid, gid] = val.split(' ');
    files[k.slice('file_'.length)] = { sha256, mode: parseInt(mode, 8), uid: Number(uid), gid: Number(gid) };
  }
  const nodePath = valueOf(lines, 'node_path');
  return {
    uid: Number(v('uid') || NaN),
    hostname: v('hostname'),
    osRelease: v('os_release') === 'yes',
    os: { id: v('os_ID'), versionId: v('os_VERSION_ID'), prettyName: v('os_PRETTY_NAME') },
    systemctl: valueOf(lines, 'systemctl'),
    node: nodePath ? { path: nodePath, version: v('node_version') } : undefined,
    apt: v('apt') === 'yes',
    dirs: { dir: v('dir') === 'yes', tls: v('tls_dir') === 'yes', state: v('state_dir') === 'yes' },
    packages: v('packages').split(/\s+/).filter(Boolean),
    files,
    active: v('active'),
    systemdDown: v('systemd_down') === 'yes',
    enabled: v('enabled') === 'yes',
    unitListen: valueOf(lines, 'unit_listen') || undefined,
    listeners: lines.filter(([k]) => k === 'listen').map(([, a]) => decodeProcAddress(a)),
  };
}

/** Whether `node --version` output is at least MIN_NODE. */
export function nodeUsable(version: string | undefined): boolean {
  const m = /^v(\d+)\.(\d+)\.(\d+)/.exec(version ?? '');
  if (!m) return false;
  const have = [Number(m[1]), Number(m[2]), Number(m[3])];
  for (let i = 0; i < 3; i++) if (have[i] !== MIN_NODE[i]) return have[i] > MIN_NODE[i];
  return true;
}

function hostError(code: ErrorCode, target: SshTarget, what: string, hint: string): CmError {
  return new CmError(code, `the ${target.side} host (${target.destination}) ${what}`, {
    hint,
    details: { host: target.destination, side: target.side },
    exitCode: ExitCode.precondition,
  });
}

const NO_SYSTEMD_HINT = 'install on a Debian host booted with systemd (its default init), or start cmmigrate-agent by hand (README: "Starting an agent by hand")';

/** Throws when the host is no Debian 12/13 with systemd on which we are root. */
export function checkHost(target: SshTarget, f: HostFacts, planFile: string): void {
  const name = f.os.prettyName || [f.os.id, f.os.versionId].filter(Boolean).join(' ') || 'an unknown system';
  const supported = `cmmigrate installs its agent on Debian ${DEBIAN_RELEASES.join(' or ')}, like the relay itself`;
  if (f.uid !== 0) {
    throw hostError('precondition.not_root', target, `logs in as uid ${f.uid}, not root: the agent must run as root`, `set ${target.side}.ssh in ${planFile} to root@HOST (and allow root's key login there), then run ${RERUN}`);
  }
  if (!f.osRelease) {
    throw hostError('precondition.not_debian', target, 'has no /etc/os-release, so it is not Debian', `${supported}; point ${target.side}.ssh in ${planFile} at the relay host`);
  }
  if (f.os.id !== 'debian') {
    throw hostError('precondition.not_debian', target, `runs ${name} (ID=${f.os.id || 'unset'}), not Debian`, `${supported}; install Debian there or point ${target.side}.ssh in ${planFile} at the relay host`);
  }
  if (!DEBIAN_RELEASES.includes(f.os.versionId)) {
    throw hostError('precondition.unsupported_debian', target, `runs ${name}${f.os.versionId ? '' : ' (no VERSION_ID: testing or unstable)'}, not Debian ${DEBIAN_RELEASES.join(' or ')}`, `${supported}; upgrade the host to a supported release`);
  }
  if (!f.systemctl) {
    throw hostError('precondition.no_systemd', target, 'has no systemctl: the agent runs as a systemd service', NO_SYSTEMD_HINT);
  }
  if (f.systemdDown) {
    throw hostError('precondition.no_systemd', target, 'has systemctl, but systemd is not running there: the host was not booted with systemd (a container?)', NO_SYSTEMD_HINT);
  }
  if (!nodeUsable(f.node?.version) && !f.apt) {
    throw hostError('precondition.no_node', target, `has no Node.js ${MIN_NODE.join('.')} or newer${f.node ? ` (${f.node.path} is ${f.node.version})` : ''} and no apt-get to install it`, `install Node.js 18.19 or newer there, then run ${RERUN}`);
  }
}

/** Whether a listener on `addr` blocks binding `host` on the same port. */
function blocks(addr: string, host: string): boolean {
  const wildcard = (a: string): boolean => a === '0.0.0.0' || a === '::';
  if (wildcard(addr) || wildcard(host)) return true;
  if (!net.isIP(host)) return true; // a name: it may resolve to any of them
  const plain = (a: string): string => a.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
  return plain(addr) === plain(host);
}

/**
 * The listeners that keep the agent from binding `host:port`, leaving out our own agent
 * when it runs on that very address (a restart frees it).
 */
export function portConflicts(f: HostFacts, host: string, listen: string): string[] {
  if (f.active === 'active' && f.unitListen === listen) return [];
  return f.listeners.filter((a) => blocks(a, host));
}
