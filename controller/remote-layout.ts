/**
 * Where an installed agent lives on a relay host, and its systemd unit. Everything
 * install-agent puts on a host is listed here, so that uninstall-agent and a rollback
 * remove exactly that:
 *
 *   /opt/cmmigrate/                       0755  root
 *     cmmigrate-agent.js                  0755  the bundled agent (one file, needs only node)
 *     tls/                                0700  ca.crt 0644, agent.crt 0644, agent.key 0600
 *     state/                              0700  the agent's record of what it wrote (--state-dir)
 *     installed-packages                  0644  only when install-agent installed nodejs: what apt added
 *   /etc/systemd/system/cmmigrate-agent.service          0644
 *   /etc/systemd/system/multi-user.target.wants/...      (systemctl enable)
 *
 * CMMIGRATE_REMOTE_PREFIX (tests only) puts all of it under another directory on the host,
 * which then also serves as the agent's --root.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { AGENT_NODE_FLAGS, CmError } from '../proto';

export const UNIT_NAME = 'cmmigrate-agent.service';

export interface RemoteLayout {
  /** '' on a real host. */
  prefix: string;
  /** The agent's --root: the prefix, or '/'. */
  root: string;
  dir: string;
  bundle: string;
  tlsDir: string;
  stateDir: string;
  /** The packages install-agent installed (apt), one a line. */
  packagesMarker: string;
  unitDir: string;
  unitFile: string;
  osRelease: string;
}

export function remoteLayout(prefix = ''): RemoteLayout {
  const dir = `${prefix}/opt/cmmigrate`;
  const unitDir = `${prefix}/etc/systemd/system`;
  return {
    prefix,
    root: prefix || '/',
    dir,
    bundle: `${dir}/cmmigrate-agent.js`,
    tlsDir: `${dir}/tls`,
    stateDir: `${dir}/state`,
    packagesMarker: `${dir}/installed-packages`,
    unitDir,
    unitFile: `${unitDir}/${UNIT_NAME}`,
    osRelease: `${prefix}/etc/os-release`,
  };
}

/** CMMIGRATE_REMOTE_PREFIX, checked: '' when unset. */
export function remotePrefix(env: NodeJS.ProcessEnv = process.env): string {
  const p = env.CMMIGRATE_REMOTE_PREFIX ?? '';
  if (p === '') return '';
  if (!p.startsWith('/') || path.posix.normalize(p) !== p || p === '/' || p.endsWith('/') || !/^[A-Za-z0-9_@%+=:,./-]+$/.test(p)) {
    throw new CmError('usage.bad_option', `CMMIGRATE_REMOTE_PREFIX ${JSON.stringify(p)} must be an absolute, normalized directory without spaces or quotes`, {
      hint: 'unset it on a real migration: it exists for tests that install into a directory',
    });
  }
  return p;
}

/** One file install-agent owns on the host. `name` is its flat name in the upload. */
export interface ManagedFile {
  name: string;
  path: string;
  mode: number;
}

export function managedFiles(l: RemoteLayout): ManagedFile[] {
  return [
    { name: 'cmmigrate-agent.js', path: l.bundle, mode: 0o755 },
    { name: 'ca.crt', path: `${l.tlsDir}/ca.crt`, mode: 0o644 },
    { name: 'agent.crt', path: `${l.tlsDir}/agent.crt`, mode: 0o644 },
    { name: 'agent.key', path: `${l.tlsDir}/agent.key`, mode: 0o600 },
    { name: UNIT_NAME, path: l.unitFile, mode: 0o644 },
  ];
}

/** An ExecStart word: plain when safe, else quoted as systemd reads it (% and $ escaped). */
export function systemdWord(s: string): string {
  const escaped = s.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /^[A-Za-z0-9_@+=:,./[\]-]+$/.test(escaped) ? escaped : `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

export interface UnitOptions {
  node: string;
  listen: string;
  mailboxesDir: string;
  side: string;
}

/** The systemd unit of the agent: bound to the plan's address, restarted on failure. */
export function renderUnit(l: RemoteLayout, o: UnitOptions): string {
  const exec = [o.node, ...AGENT_NODE_FLAGS, l.bundle, 'serve', '--listen', o.listen, '--root', l.root, '--tls-dir', l.tlsDir, '--mailboxes-dir', o.mailboxesDir, '--state-dir', l.stateDir];
  return [
    '# Installed by `cmmigrate install-agent`; `cmmigrate uninstall-agent` removes it.',
    '[Unit]',
    `Description=cmmigrate agent (${o.side} host of a chatmail relay migration)`,
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=exec',
    `ExecStart=${exec.map(systemdWord).join(' ')}`,
    'Restart=on-failure',
    'RestartSec=2',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/** The bundled agent that install-agent uploads (dist/cmmigrate-agent.js). */
export function agentBundlePath(env: NodeJS.ProcessEnv = process.env): string {
  const candidates = [
    env.CMMIGRATE_AGENT_BUNDLE,
    path.join(__dirname, '..', 'cmmigrate-agent.js'), // dist/controller/ → dist/
    path.join(__dirname, '..', 'dist', 'cmmigrate-agent.js'), // controller/ (sources)
  ].filter((c): c is string => !!c);
  const found = candidates.find((c) => existsSync(c));
  if (!found) {
    throw new CmError('install.bundle_missing', `the bundled agent is missing (looked for ${candidates.join(', ')})`, {
      hint: 'build it with `npm run build`, which writes dist/cmmigrate-agent.js',
    });
  }
  return found;
}
