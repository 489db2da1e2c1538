/**
 * A chatmail/relay checkout whose `scripts/cmdeploy` behaves like the real one for the four
 * calls of a migration, against host roots and host states on this machine instead of ssh:
 *
 * - `CMDEPLOY_STAGES=install,configure cmdeploy run --ssh-host NEW` (preconfigure) adds the
 *   relay's users to the new root with other ids than the old root has, generates a fresh
 *   DKIM key there when none exists (as the real step 2 does), and leaves postfix and
 *   opendkim running, as Debian's packages do on install.
 * - `cmdeploy run --ssh-host OLD --disable-mail` stops postfix and dovecot, nothing else.
 * - `CMDEPLOY_STAGES=activate cmdeploy run --ssh-host NEW` starts the relay's units that are
 *   not running; a running one is not restarted.
 * - `cmdeploy run --ssh-host OLD` (a full deploy: rollback) starts the relay's units again.
 *
 * It is strict about everything else: another argv, another CMDEPLOY_STAGES (a trailing
 * space included), stages on the old host, a full deploy of the new host, a working
 * directory other than the checkout root or an unknown host is logged as
 * `unexpected: why` and exits 1 with no effect. Every call is logged in
 * `<checkout>/.standin/calls.jsonl`. Faults are files in `<checkout>/.standin/faults/`:
 * `fail-<action>` makes that action exit 1 with a realistic error and no effect,
 * `keep-mail-<unit>` makes `--disable-mail` exit 0 but leave the unit running.
 *
 * Host state is the stand-in host tools' format: `<hostState>/units/<unit>` holds `active`
 * or `inactive`; a missing file is inactive. When relay-services.ts runs for a host, a call
 * returns only once its ports follow the units the call started or stopped (at most 5 s),
 * as systemd returns once a service is up.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ALLOWED_UNITS, type UnitName } from '../../proto';
import { writeIdentity } from './relay-tree';
import { writeCheckoutSources } from './relay-checkout';

/** The units of a relay host, as the stand-in host tools know them: those an agent may touch. */
export const RELAY_UNITS = ALLOWED_UNITS;
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

const STATE = '.standin';
/** Where relay-services.ts publishes what it applied (its APPLIED_FILE), read by the script. */
const APPLIED_FILE_NAME = 'relay-services.json';

/** Writes the checkout (a git repository with one commit) and returns its handle. */
export async function makeStandinRelay(o: StandinRelayOptions): Promise<StandinRelay> {
  const dir = path.resolve(o.dir);
  await fs.promises.mkdir(dir, { recursive: true });
  const mailDomain = o.mailDomain ?? 'mail.example.org';
  await writeCheckoutSources(dir, { stages: 'basedeploy', release: o.release ?? '1.8.0', mailDomain, mailboxesDir: o.mailboxesDir });
  await fs.promises.mkdir(path.join(dir, 'scripts'), { recursive: true });
  await fs.promises.writeFile(path.join(dir, 'scripts/cmdeploy'), standinScript(), { mode: 0o755 });
  await fs.promises.writeFile(path.join(dir, '.gitignore'), `${STATE}/\n`);

  // The users preconfigure adds: what writeIdentity writes, at the new host's ids.
  const scratch = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'cmm-identity-'));
  let identity: { passwd: string; group: string };
  try {
    await writeIdentity(scratch, o.newUidBase ?? 7000);
    identity = {
      passwd: await fs.promises.readFile(path.join(scratch, 'etc/passwd'), 'utf8'),
      group: await fs.promises.readFile(path.join(scratch, 'etc/group'), 'utf8'),
    };
  } finally {
    await fs.promises.rm(scratch, { recursive: true, force: true });
  }
  const hosts = Object.fromEntries(
    Object.entries(o.hosts).map(([h, v]) => [h, { role: v.role, root: path.resolve(v.root), hostState: path.resolve(v.hostState) }]),
  );
  await fs.promises.mkdir(path.join(dir, STATE, 'faults'), { recursive: true });
  await fs.promises.writeFile(path.join(dir, STATE, 'config.json'), JSON.stringify({ mailDomain, hosts, identity }, null, 2));

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

/** Writes a unit's state into a host state directory (atomically: pollers never see half a file). */
export function setUnitState(hostState: string, unit: string, state: 'active' | 'inactive'): void {
  const dir = path.join(hostState, 'units');
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.${unit}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, `${state}\n`);
  fs.renameSync(tmp, path.join(dir, unit));
}

/** The stand-in, as a Node script run by this very node binary. */
function standinScript(): string {
  return `#!${process.execPath}
'use strict';
// cmmigrate's stand-in for chatmail/relay's cmdeploy: see test/support/standin-relay.ts.
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const checkout = path.dirname(path.dirname(fs.realpathSync(__filename)));
const state = path.join(checkout, ${JSON.stringify(STATE)});
const config = JSON.parse(fs.readFileSync(path.join(state, 'config.json'), 'utf8'));
const argv = process.argv.slice(2);
const stages = Object.prototype.hasOwnProperty.call(process.env, 'CMDEPLOY_STAGES') ? process.env.CMDEPLOY_STAGES : null;
const cwd = process.cwd();
const UNITS = ${JSON.stringify(RELAY_UNITS)};
const call = { argv, cwd, stages, host: null, action: null, verdict: 'ok', exit: 0, fault: null, started: [], stopped: [], at: '' };

function finish(verdict, exit) {
  call.verdict = verdict;
  call.exit = exit;
  call.at = new Date().toISOString();
  fs.mkdirSync(state, { recursive: true });
  fs.appendFileSync(path.join(state, 'calls.jsonl'), JSON.stringify(call) + '\\n');
  process.exitCode = exit;
}
function unexpected(why) {
  process.stderr.write('cmdeploy stand-in: unexpected call: ' + why + '\\n');
  finish('unexpected: ' + why, 1);
}
const out = (s) => process.stdout.write(s + '\\n');
const hasFault = (name) => fs.existsSync(path.join(state, 'faults', name));

function unitFile(h, unit) { return path.join(h.hostState, 'units', unit); }
function isActive(h, unit) {
  try { return fs.readFileSync(unitFile(h, unit), 'utf8').trim() === 'active'; } catch { return false; }
}
function setUnit(h, unit, value) {
  fs.mkdirSync(path.dirname(unitFile(h, unit)), { recursive: true });
  const tmp = unitFile(h, '.' + unit + '.' + process.pid + '.tmp');
  fs.writeFileSync(tmp, value + '\\n');
  fs.renameSync(tmp, unitFile(h, unit));
}
function start(h, unit) {
  if (isActive(h, unit)) return;
  setUnit(h, unit, 'active');
  call.started.push(unit);
  out('    [' + call.host + '] Started ' + unit + (unit.includes('.') ? '' : '.service'));
}
function stop(h, unit) {
  if (!isActive(h, unit)) return;
  setUnit(h, unit, 'inactive');
  call.stopped.push(unit);
}

function unitVersion(h, unit) {
  try {
    if (fs.readFileSync(unitFile(h, unit), 'utf8').trim() !== 'active') return null;
    const st = fs.statSync(unitFile(h, unit));
    return st.ino + ':' + st.mtimeMs;
  } catch { return null; }
}
const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
/**
 * As systemctl returns once a unit has started or stopped: when the host's relay services
 * run (${APPLIED_FILE_NAME}), wait until they follow the units this call changed.
 */
function waitForServices(h, units) {
  const file = path.join(h.hostState, ${JSON.stringify(APPLIED_FILE_NAME)});
  const deadline = Date.now() + 5000;
  for (;;) {
    let info;
    try { info = JSON.parse(fs.readFileSync(file, 'utf8')); } catch { return; }
    try { process.kill(info.pid, 0); } catch { return; }
    const behind = units.filter((u) => u in info.applied && info.applied[u] !== unitVersion(h, u));
    if (behind.length === 0) return;
    if (Date.now() > deadline) {
      process.stderr.write('cmdeploy stand-in: the relay services did not follow ' + behind.join(', ') + ' within 5 s\\n');
      return;
    }
    sleep(10);
  }
}

function writeAtomic(file, text, mode) {
  const tmp = file + '.standin-tmp';
  fs.writeFileSync(tmp, text, { mode });
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, file);
}
/** Adds the lines of \`lines\` whose name is not in \`file\` yet, as useradd and groupadd would. */
function addNames(file, lines) {
  let text = '';
  try { text = fs.readFileSync(file, 'utf8'); } catch {}
  const have = new Set(text.split('\\n').filter(Boolean).map((l) => l.split(':')[0]));
  const add = lines.split('\\n').filter(Boolean).filter((l) => !have.has(l.split(':')[0]));
  if (add.length === 0) return;
  if (text !== '' && !text.endsWith('\\n')) text += '\\n';
  writeAtomic(file, text + add.join('\\n') + '\\n', 0o644);
}
function idOf(file, name) {
  for (const l of fs.readFileSync(file, 'utf8').split('\\n')) {
    const f = l.split(':');
    if (f[0] === name) return Number(f[2]);
  }
  throw new Error(name + ' is not in ' + file);
}

const FAILURES = {
  preconfigure: [
    '--> Starting operation: Install opendkim (apt.packages)',
    '    [HOST] E: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?',
    '    [HOST] Error: executed 1 commands',
    '--> pyinfra error: No hosts remaining!',
  ],
  'disable-mail': [
    '--> Starting operation: Setup chatmail-metadata (systemd.service)',
    '    [HOST] Job for chatmail-metadata.service failed because the control process exited with error code.',
    '    [HOST] Error: executed 1 commands',
    '--> pyinfra error: No hosts remaining!',
  ],
  activate: [
    '--> Starting operation: Start and enable dovecot (systemd.service)',
    '    [HOST] Job for dovecot.service failed because the control process exited with error code.',
    '    [HOST] See "systemctl status dovecot.service" and "journalctl -xeu dovecot.service" for details.',
    '    [HOST] Error: executed 1 commands',
    '--> pyinfra error: No hosts remaining!',
  ],
  'enable-mail': [
    '--> Starting operation: Start and enable postfix (systemd.service)',
    '    [HOST] Job for postfix.service failed because the control process exited with error code.',
    '    [HOST] Error: executed 1 commands',
    '--> pyinfra error: No hosts remaining!',
  ],
};

function preconfigure(h) {
  out('--> Starting operation: Install chatmail packages (apt.packages)');
  addNames(path.join(h.root, 'etc/passwd'), config.identity.passwd);
  addNames(path.join(h.root, 'etc/group'), config.identity.group);
  out('    [' + call.host + '] Success');
  // Debian's postfix and opendkim packages start their daemons when installed.
  start(h, 'postfix');
  start(h, 'opendkim');
  // As the relay's configure stage: a DKIM key only when there is none.
  const keys = path.join(h.root, 'etc/dkimkeys');
  const key = path.join(keys, 'opendkim.private');
  if (!fs.existsSync(key)) {
    out('--> Starting operation: Generate DKIM key (server.shell)');
    const uid = idOf(path.join(h.root, 'etc/passwd'), 'opendkim');
    const gid = idOf(path.join(h.root, 'etc/group'), 'opendkim');
    fs.mkdirSync(keys, { recursive: true, mode: 0o750 });
    fs.chownSync(keys, uid, gid);
    fs.chmodSync(keys, 0o750);
    const pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pub = pair.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    writeAtomic(key, pair.privateKey.export({ type: 'pkcs1', format: 'pem' }), 0o600);
    fs.chownSync(key, uid, gid);
    const txt = path.join(keys, 'opendkim.txt');
    writeAtomic(txt, 'opendkim._domainkey\\tIN\\tTXT\\t( "v=DKIM1; h=sha256; k=rsa; "\\n\\t  "p=' + pub + '" )  ; ----- DKIM key opendkim for ' + config.mailDomain + '\\n', 0o644);
    fs.chownSync(txt, uid, gid);
    out('    [' + call.host + '] Success');
  }
}

function main() {
  const disable = argv.length === 4 && argv[3] === '--disable-mail';
  if (!(argv[0] === 'run' && argv[1] === '--ssh-host' && (argv.length === 3 || disable))) {
    return unexpected('argv ' + JSON.stringify(argv) + ', expected ["run","--ssh-host",HOST] or ["run","--ssh-host",HOST,"--disable-mail"]');
  }
  call.host = argv[2];
  const h = Object.prototype.hasOwnProperty.call(config.hosts, call.host) ? config.hosts[call.host] : undefined;
  if (!h) return unexpected('--ssh-host ' + JSON.stringify(call.host) + ' is none of the hosts ' + Object.keys(config.hosts).join(', '));
  let real = cwd;
  try { real = fs.realpathSync(cwd); } catch {}
  if (real !== checkout) return unexpected('working directory ' + cwd + ', expected the checkout root ' + checkout);
  if (h.role === 'old') {
    if (stages !== null) return unexpected('CMDEPLOY_STAGES=' + JSON.stringify(stages) + ' for the old host ' + call.host + ': disabling or re-enabling mail is a full deploy, the variable must be absent');
    call.action = disable ? 'disable-mail' : 'enable-mail';
  } else {
    if (disable) return unexpected('--disable-mail for the new host ' + call.host);
    if (stages === null) return unexpected('a full deploy (CMDEPLOY_STAGES absent) of the new host ' + call.host + ' would switch it on before the final sync');
    if (stages === 'install,configure') call.action = 'preconfigure';
    else if (stages === 'activate') call.action = 'activate';
    else return unexpected('CMDEPLOY_STAGES=' + JSON.stringify(stages) + ' for the new host ' + call.host + ', expected exactly "install,configure" or "activate"');
  }

  // The real one reads chatmail.ini from the working directory before anything else.
  if (!fs.existsSync(path.join(cwd, 'chatmail.ini'))) {
    process.stderr.write('expecting chatmail.ini to exist, run init first?\\n');
    return finish('ok', 1);
  }
  out('[ssh] root@' + call.host + ': connected');
  out('--> Running stages ' + (stages === null ? 'install,configure,activate' : stages) + ' on ' + call.host + (disable ? ' (mail disabled)' : ''));
  const fail = 'fail-' + call.action;
  if (hasFault(fail)) {
    call.fault = fail;
    for (const line of FAILURES[call.action]) out(line.replace('HOST', call.host));
    process.stderr.write('Deploy failed\\n');
    return finish('ok', 1);
  }
  switch (call.action) {
    case 'preconfigure':
      preconfigure(h);
      break;
    case 'disable-mail':
      for (const unit of ['postfix', 'dovecot']) {
        if (hasFault('keep-mail-' + unit)) {
          call.fault = 'keep-mail-' + unit;
          continue;
        }
        stop(h, unit);
      }
      out('    [' + call.host + '] Stop and disable postfix.service, dovecot.service');
      break;
    case 'activate':
    case 'enable-mail':
      for (const unit of UNITS) start(h, unit);
      break;
  }
  waitForServices(h, call.started.concat(call.stopped));
  process.stderr.write('Deploy completed, call \`cmdeploy dns\` next.\\n');
  finish('ok', 0);
}

try {
  main();
} catch (err) {
  process.stderr.write('cmdeploy stand-in crashed: ' + (err && err.stack || err) + '\\n');
  finish('unexpected: the stand-in crashed: ' + (err && err.message || err), 1);
}
`;
}
