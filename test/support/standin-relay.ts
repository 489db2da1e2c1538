/**
 * A chatmail/relay checkout whose `scripts/cmdeploy` behaves like the real one (relay 1.12.0
 * and main; facts with their upstream files in /work/notes/upstream-facts.md) for the four
 * calls of a migration, against host roots and host states on this machine instead of ssh:
 *
 * - `CMDEPLOY_STAGES=install,configure cmdeploy run --ssh-host NEW` (preconfigure): install
 *   adds the relay's users and groups (vmail, iroh, opendkim, postfix in group opendkim;
 *   postdrop, dovecot, dovenull from Debian's packages) with other ids than the old root has,
 *   and postfix and opendkim start as Debian's packages start them. Configure then writes
 *   what upstream writes into carried roots (see `configure()` below: acme conf/ and desired/,
 *   /etc/dkimkeys KeyTable and SigningTable, a new DKIM key only when none exists, the
 *   spool's opendkim/ and the mailboxes directory, a self-signed pair when missing), and
 *   with `tls_external_cert_and_key` fails like upstream when a file is missing.
 * - `cmdeploy run --ssh-host OLD --disable-mail`: a full deploy (install, configure, activate)
 *   that starts every unit the relay has, then stops postfix and dovecot at the very end.
 * - `CMDEPLOY_STAGES=activate cmdeploy run --ssh-host NEW` starts the relay's units that are
 *   not running (none is restarted, no daemon-reload) and stops the oneshots that finished.
 * - `cmdeploy run --ssh-host OLD` (a full deploy: rollback) starts the relay's units again.
 *
 * A postfix start copies the chroot files and writes `pid/master.pid` in the spool, as
 * Debian's postfix does. `StandinRelayOptions.model` switches the upstream behaviours off one
 * by one (`legacyStandinModel()`: the stand-in as it was before, for tests written for it).
 *
 * It is strict about everything else: another argv, another CMDEPLOY_STAGES (a trailing
 * space included), stages on the old host, a full deploy of the new host, a working
 * directory other than the checkout root or an unknown host is logged as
 * `unexpected: why` and exits 1 with no effect. Every call is logged in
 * `<checkout>/.standin/calls.jsonl`. Faults are files in `<checkout>/.standin/faults/`:
 * `fail-<action>` makes that action exit 1 with a realistic error and no effect,
 * `keep-mail-<unit>` makes `--disable-mail` exit 0 but leave the unit running.
 *
 * Host state is the stand-in host tools' format: `<hostState>/units/<unit>` holds `active`,
 * `inactive` or `activating` (a oneshot run in progress); a missing file is inactive. When
 * relay-services.ts runs for a host, a call returns only once its ports follow the units the
 * call started or stopped (at most 5 s), as systemd returns once a service is up.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ALLOWED_UNITS, type UnitName } from '../../proto';
import { writeIdentity } from './relay-tree';
import { writeCheckoutSources } from './relay-checkout';
import { REPO } from './harness';

/** The units of a relay host, as the stand-in host tools know them: those an agent may touch. */
// The allowlist's short names, as host-state files name units; its full unit names (issue 12)
// reach the same files through the stand-in systemctl, which drops `.service`.
export const RELAY_UNITS = ALLOWED_UNITS.slice(0, ALLOWED_UNITS.indexOf('postfix.service'));
export type RelayUnit = UnitName;

/** What the stand-in does, by argv and CMDEPLOY_STAGES. */
export type StandinAction = 'preconfigure' | 'disable-mail' | 'activate' | 'enable-mail';
export const STANDIN_ACTIONS: readonly StandinAction[] = ['preconfigure', 'disable-mail', 'activate', 'enable-mail'];

export interface StandinHost {
  role: 'old' | 'new';
  /** The host's root directory (what its agent serves). */
  root: string;
  /** The host's state directory (`CMMIGRATE_HOST_STATE` of its agent). */
  hostState: string;
}

export interface StandinRelayOptions {
  /** The checkout directory, created. */
  dir: string;
  mailDomain?: string;
  /** Written into chatmail.ini as `mailboxes_dir` when given. */
  mailboxesDir?: string;
  /** By `--ssh-host` value. */
  hosts: Record<string, StandinHost>;
  /** First id of the relay's users that preconfigure writes on a new root. Default 7000. */
  newUidBase?: number;
  /** The release CHANGELOG.md names. Default 1.8.0. */
  release?: string;
  /** Extra `[params]` lines of chatmail.ini, e.g. `tls_external_cert_and_key = /c.pem /k.pem`. */
  iniLines?: string[];
  /**
   * The checkout's venv as `scripts/initenv.sh` leaves it (venv/bin/activate, venv/bin/cmdeploy,
   * pyinfra's dist-info): the pyinfra version, default 3.2.0; null: no venv at all.
   */
  venvPyinfra?: string | null;
  /** Which upstream behaviours the stand-in models; each defaults to true. */
  model?: Partial<StandinModel>;
}

/** Upstream behaviours of the stand-in, each switchable (all true: as upstream 1.12.0 does). */
export interface StandinModel {
  /**
   * Configure writes into carried roots as upstream does, on the new host (step 2) and in the
   * full deploys of the old host: /var/lib/acme/conf/{responses,target}, desired/<domain>,
   * /etc/dkimkeys/{KeyTable,SigningTable}, chown of opendkim.private, /var/spool/postfix/opendkim/,
   * the mailboxes directory, the self-signed pair when missing. (The DKIM key is generated
   * when absent either way, as before.)
   */
  configureWrites: boolean;
  /**
   * Configure creates the mailboxes directory (vmail, 0700) as ChatmailDeployer.configure
   * does, while step 1 may be writing into its parent (cmmigrate runs steps 1 and 2 together).
   */
  createMailboxesDir: boolean;
  /** A postfix start copies /etc files into the spool's chroot and writes pid/master.pid. */
  postfixRuntime: boolean;
  /**
   * Activate and full deploys start every unit upstream's deployers start for this ini, and
   * stop the finished oneshots (`chatmail-expire`, `chatmail-fsreport`, `acmetool-reconcile`)
   * as upstream's `running=False` does; false: only RELAY_UNITS, as before.
   */
  upstreamUnits: boolean;
  /** Debian's dovecot package users (dovecot, dovenull) come with install. */
  packageUsers: boolean;
}

/** The stand-in as it was before it followed upstream's source (for tests written for that one). */
export function legacyStandinModel(): StandinModel {
  return { configureWrites: false, createMailboxesDir: false, postfixRuntime: false, upstreamUnits: false, packageUsers: false };
}

export interface LoggedCall {
  argv: string[];
  /** The working directory as cmdeploy saw it. */
  cwd: string;
  /** CMDEPLOY_STAGES, or null when absent. */
  stages: string | null;
  /** The `--ssh-host` value, when argv had one. */
  host: string | null;
  /** What the call was taken as, once argv, host and stages were right. */
  action: StandinAction | null;
  /** "ok", or "unexpected: why". */
  verdict: string;
  exit: number;
  /** The fault that made it fail or keep mail running, if any. */
  fault: string | null;
  /** Units this call started or stopped. */
  started: string[];
  stopped: string[];
  /** ISO time the call ended. */
  at: string;
}

export interface StandinRelay {
  dir: string;
  /** The checkout's HEAD commit. */
  head: string;
  calls(): LoggedCall[];
  setFault(name: string, on: boolean): void;
}

/** The stand-in's state directory in the checkout (standin-cmdeploy.js has the same name). */
const STATE = '.standin';

/** Writes the checkout (a git repository with one commit) and returns its handle. */
export async function makeStandinRelay(o: StandinRelayOptions): Promise<StandinRelay> {
  const dir = path.resolve(o.dir);
  await fs.promises.mkdir(dir, { recursive: true });
  const mailDomain = o.mailDomain ?? 'mail.example.org';
  await writeCheckoutSources(dir, { stages: 'basedeploy', release: o.release ?? '1.8.0', mailDomain, mailboxesDir: o.mailboxesDir });
  if (o.iniLines?.length) await fs.promises.appendFile(path.join(dir, 'chatmail.ini'), o.iniLines.join('\n') + '\n');
  const model: StandinModel = { configureWrites: true, createMailboxesDir: true, postfixRuntime: true, upstreamUnits: true, packageUsers: true, ...o.model };
  await fs.promises.mkdir(path.join(dir, 'scripts'), { recursive: true });
  await fs.promises.writeFile(path.join(dir, 'scripts/cmdeploy'), standinScript(), { mode: 0o755 });
  await fs.promises.writeFile(path.join(dir, '.gitignore'), `${STATE}/\nvenv/\n`);
  const pyinfra = o.venvPyinfra === undefined ? '3.2.0' : o.venvPyinfra;
  if (pyinfra !== null) {
    const dist = path.join(dir, 'venv/lib/python3.11/site-packages', `pyinfra-${pyinfra}.dist-info`);
    await fs.promises.mkdir(dist, { recursive: true });
    await fs.promises.writeFile(path.join(dist, 'METADATA'), `Metadata-Version: 2.1\nName: pyinfra\nVersion: ${pyinfra}\n`);
    await fs.promises.mkdir(path.join(dir, 'venv/bin'), { recursive: true });
    await fs.promises.writeFile(path.join(dir, 'venv/bin/activate'), '# made by the stand-in: scripts/cmdeploy does not source it\n');
    await fs.promises.writeFile(path.join(dir, 'venv/bin/cmdeploy'), '#!/bin/sh\nexec "$(dirname "$0")/../../scripts/cmdeploy" "$@"\n', { mode: 0o755 });
  }

  // The users preconfigure adds: what writeIdentity writes, at the new host's ids.
  const scratch = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'cmm-identity-'));
  let identity: { passwd: string; group: string };
  try {
    const base = o.newUidBase ?? 7000;
    await writeIdentity(scratch, base);
    identity = {
      passwd: await fs.promises.readFile(path.join(scratch, 'etc/passwd'), 'utf8'),
      group: await fs.promises.readFile(path.join(scratch, 'etc/group'), 'utf8'),
    };
    if (model.packageUsers) {
      // Debian's dovecot-core adds these (cmdeploy installs it under policy-rc.d, not started).
      identity.passwd += `dovecot:x:${base + 90}:${base + 90}:Dovecot mail server,,,:/usr/lib/dovecot:/usr/sbin/nologin\ndovenull:x:${base + 91}:${base + 91}:Dovecot login user,,,:/nonexistent:/usr/sbin/nologin\n`;
      identity.group += `dovecot:x:${base + 90}:\ndovenull:x:${base + 91}:\n`;
    }
  } finally {
    await fs.promises.rm(scratch, { recursive: true, force: true });
  }
  const hosts = Object.fromEntries(
    Object.entries(o.hosts).map(([h, v]) => [h, { role: v.role, root: path.resolve(v.root), hostState: path.resolve(v.hostState) }]),
  );
  await fs.promises.mkdir(path.join(dir, STATE, 'faults'), { recursive: true });
  await fs.promises.writeFile(path.join(dir, STATE, 'config.json'), JSON.stringify({ mailDomain, hosts, identity, model, units: RELAY_UNITS }, null, 2));

  const git = (...args: string[]): string =>
    execFileSync('git', ['-c', 'user.name=cmmigrate rehearsal', '-c', 'user.email=rehearsal@example.org', '-c', 'init.defaultBranch=main', ...args], {
      cwd: dir,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  git('init', '-q');
  git('add', '-A');
  git('commit', '-q', '-m', 'chatmail relay checkout (cmmigrate stand-in)');
  const head = git('rev-parse', 'HEAD');
  return { dir, head, calls: () => standinCalls(dir), setFault: (name, on) => setFault(dir, name, on) };
}

const FAULT_RE = new RegExp(`^(fail-(${STANDIN_ACTIONS.join('|')})|keep-mail-(${RELAY_UNITS.map((u) => u.replace('.', '\\.')).join('|')}))$`);

/** Switches a fault of the stand-in in checkout `dir` on or off. Unknown names throw. */
export function setFault(dir: string, name: string, on: boolean): void {
  if (!FAULT_RE.test(name)) throw new Error(`unknown stand-in fault ${JSON.stringify(name)}: fail-<${STANDIN_ACTIONS.join('|')}> or keep-mail-<unit>`);
  const file = path.join(dir, STATE, 'faults', name);
  if (on) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, '');
  } else fs.rmSync(file, { force: true });
}

/** Every call the stand-in in checkout `dir` got, in order. */
export function standinCalls(dir: string): LoggedCall[] {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, STATE, 'calls.jsonl'), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LoggedCall);
}

/** Reads a unit's state from a host state directory. */
export function unitState(hostState: string, unit: string): 'active' | 'inactive' {
  try {
    return fs.readFileSync(path.join(hostState, 'units', unit), 'utf8').trim() === 'active' ? 'active' : 'inactive';
  } catch {
    return 'inactive';
  }
}

/** Writes a unit's state into a host state directory (atomically: pollers never see half a file); `activating`: a oneshot run in progress. */
export function setUnitState(hostState: string, unit: string, state: 'active' | 'inactive' | 'activating'): void {
  const dir = path.join(hostState, 'units');
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.${unit}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, `${state}\n`);
  fs.renameSync(tmp, path.join(dir, unit));
}

/** The stand-in's code (from the sources: the build does not copy scripts). */
const STANDIN_JS = path.join(REPO, 'test', 'support', 'standin-cmdeploy.js');

type ActivateUnitsFor = (shape: { tls: { mode: string }; ipv4: boolean; mtail: boolean }, model: StandinModel, legacy: readonly string[]) => Array<[string, 'start' | 'stop']>;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const standinJs = require(STANDIN_JS) as { activateUnitsFor: ActivateUnitsFor };

/**
 * The units (host-state names) a relay runs once upstream's activate stage ran, in deploy
 * order: what a deployed old host runs, and what the stand-in's activate starts.
 */
export function upstreamRunningUnits(o: { tlsMode?: 'acme' | 'self' | 'external'; ipv4?: boolean; mtail?: boolean } = {}): string[] {
  const model: StandinModel = { configureWrites: true, createMailboxesDir: true, postfixRuntime: true, upstreamUnits: true, packageUsers: true };
  return standinJs
    .activateUnitsFor({ tls: { mode: o.tlsMode ?? 'acme' }, ipv4: o.ipv4 ?? false, mtail: o.mtail ?? false }, model, RELAY_UNITS)
    .filter(([, what]) => what === 'start')
    .map(([u]) => u);
}

/** The checkout's `scripts/cmdeploy`: this very node binary running standin-cmdeploy.js. */
function standinScript(): string {
  return `#!${process.execPath}
'use strict';
// cmmigrate's stand-in for chatmail/relay's cmdeploy: see test/support/standin-relay.ts.
require(${JSON.stringify(STANDIN_JS)}).main(__filename);
`;
}
