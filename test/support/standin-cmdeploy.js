'use strict';
// cmmigrate's one stand-in for chatmail/relay's cmdeploy. Plain JavaScript, loaded by a
// checkout's generated scripts/cmdeploy with the path of that script: `main` models the host
// (test/support/standin-relay.ts), `announced` checks calls a test announced
// (test/support/relay-checkout.ts). Upstream facts and their files:
// /work/notes/upstream-facts.md (relay 1.12.0 and main).
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const STATE = '.standin';
const APPLIED_FILE_NAME = 'relay-services.json';

/**
 * The units upstream's activate stage touches, in deploy order (deployers.py deploy_chatmail),
 * by host-state name (`.service` dropped), with what it does to each: `start` (running=True)
 * or `stop` (running=False). `shape`: { tls: { mode }, ipv4, mtail } from chatmail.ini.
 */
function activateUnitsFor(shape, model, legacyUnits) {
  if (!model.upstreamUnits) return legacyUnits.map((u) => [u, 'start']);
  const s = shape;
  return [
    ['filtermail', 'start'],
    ['filtermail-incoming', 'start'],
    ['filtermail-transport', 'start'],
    ['unbound', 'start'],
    ['unbound-resolvconf', 'stop'],
    ['turnserver', 'start'],
    // IrohDeployer: running=True whatever the ini says; enabled only without iroh_relay.
    ['iroh-relay', 'start'],
    ...(s.tls.mode === 'acme' ? [['acmetool-redirector', 'start'], ['acmetool-reconcile', 'stop'], ['acmetool-reconcile.timer', 'start']] : []),
    ...(s.tls.mode === 'external' ? [['tls-cert-reload.path', 'start']] : []),
    ['doveauth', 'start'],
    ['chatmail-metadata', 'start'],
    ['lastlogin', 'start'],
    ['chatmail-expire', 'stop'],
    ['chatmail-expire.timer', 'start'],
    ['chatmail-fsreport', 'stop'],
    ['chatmail-fsreport.timer', 'start'],
    ['mta-sts-daemon', 'stop'],
    ...(s.ipv4 ? [] : [['opendkim', 'start']]),
    ['dovecot', 'start'],
    ['postfix', 'start'],
    ['fcgiwrap', 'start'],
    ['nginx', 'start'],
    ...(s.mtail ? [['mtail', 'start']] : []),
  ];
}

function main(scriptFile) {
  const checkout = path.dirname(path.dirname(fs.realpathSync(scriptFile)));
  const state = path.join(checkout, STATE);
  const config = JSON.parse(fs.readFileSync(path.join(state, 'config.json'), 'utf8'));
  const model = config.model;
  const argv = process.argv.slice(2);
  const stages = Object.prototype.hasOwnProperty.call(process.env, 'CMDEPLOY_STAGES') ? process.env.CMDEPLOY_STAGES : null;
  const cwd = process.cwd();
  const call = { argv, cwd, stages, host: null, action: null, verdict: 'ok', exit: 0, fault: null, started: [], stopped: [], at: '' };

  function finish(verdict, exit) {
    call.verdict = verdict;
    call.exit = exit;
    call.at = new Date().toISOString();
    fs.mkdirSync(state, { recursive: true });
    fs.appendFileSync(path.join(state, 'calls.jsonl'), JSON.stringify(call) + '\n');
    process.exitCode = exit;
  }
  function unexpected(why) {
    process.stderr.write('cmdeploy stand-in: unexpected call: ' + why + '\n');
    finish('unexpected: ' + why, 1);
  }
  const out = (s) => process.stdout.write(s + '\n');
  const hasFault = (name) => fs.existsSync(path.join(state, 'faults', name));

  // ---------------------------------------------------------------- host state
  const unitFile = (h, unit) => path.join(h.hostState, 'units', unit);
  function unitValue(h, unit) {
    try {
      return fs.readFileSync(unitFile(h, unit), 'utf8').trim();
    } catch {
      return 'inactive';
    }
  }
  const isActive = (h, unit) => unitValue(h, unit) === 'active';
  function setUnit(h, unit, value) {
    fs.mkdirSync(path.dirname(unitFile(h, unit)), { recursive: true });
    const tmp = unitFile(h, '.' + unit + '.' + process.pid + '.tmp');
    fs.writeFileSync(tmp, value + '\n');
    fs.renameSync(tmp, unitFile(h, unit));
  }
  function start(h, unit) {
    // systemctl start of a oneshot in progress waits for it; the stand-in has none to wait for.
    if (isActive(h, unit)) return;
    setUnit(h, unit, 'active');
    call.started.push(unit);
    out('    [' + call.host + '] Started ' + unit + (unit.includes('.') ? '' : '.service'));
    if (unit === 'postfix' && model.postfixRuntime) postfixStarted(h);
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
    } catch {
      return null;
    }
  }
  const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  /**
   * As systemctl returns once a unit has started or stopped: when the host's relay services
   * run (relay-services.json), wait until they follow the units this call changed.
   */
  function waitForServices(h, units) {
    const file = path.join(h.hostState, APPLIED_FILE_NAME);
    const deadline = Date.now() + 5000;
    for (;;) {
      let info;
      try {
        info = JSON.parse(fs.readFileSync(file, 'utf8'));
      } catch {
        return;
      }
      try {
        process.kill(info.pid, 0);
      } catch {
        return;
      }
      const behind = units.filter((u) => u in info.applied && info.applied[u] !== unitVersion(h, u));
      if (behind.length === 0) return;
      if (Date.now() > deadline) {
        process.stderr.write('cmdeploy stand-in: the relay services did not follow ' + behind.join(', ') + ' within 5 s\n');
        return;
      }
      sleep(10);
    }
  }

  // ---------------------------------------------------------------- host files
  function writeAtomic(file, text, mode) {
    const tmp = file + '.standin-tmp';
    fs.writeFileSync(tmp, text, { mode });
    fs.chmodSync(tmp, mode);
    fs.renameSync(tmp, file);
  }
  /** Adds the lines of `lines` whose name is not in `file` yet, as useradd and groupadd would. */
  function addNames(file, lines) {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {}
    const have = new Set(text.split('\n').filter(Boolean).map((l) => l.split(':')[0]));
    const add = lines.split('\n').filter(Boolean).filter((l) => !have.has(l.split(':')[0]));
    if (add.length === 0) return;
    if (text !== '' && !text.endsWith('\n')) text += '\n';
    writeAtomic(file, text + add.join('\n') + '\n', 0o644);
  }
  function idOf(file, name) {
    for (const l of fs.readFileSync(file, 'utf8').split('\n')) {
      const f = l.split(':');
      if (f[0] === name) return Number(f[2]);
    }
    throw new Error(name + ' is not in ' + file);
  }
  const owner = (h, user, group) => [idOf(path.join(h.root, 'etc/passwd'), user), idOf(path.join(h.root, 'etc/group'), group ?? user)];
  /** pyinfra files.directory: create (parents root 0755), then set owner and mode. */
  function ensureDir(h, rel, mode, user, group) {
    const abs = path.join(h.root, rel);
    fs.mkdirSync(abs, { recursive: true, mode: 0o755 });
    const [uid, gid] = owner(h, user, group);
    fs.chownSync(abs, uid, gid);
    fs.chmodSync(abs, mode);
  }
  /** pyinfra files.put / files.template: write when the content differs, then owner and mode. */
  function putFile(h, rel, text, mode, user, group) {
    const abs = path.join(h.root, rel);
    fs.mkdirSync(path.dirname(abs), { recursive: true, mode: 0o755 });
    let same = false;
    try {
      same = fs.readFileSync(abs, 'utf8') === text;
    } catch {}
    if (!same) writeAtomic(abs, text, mode);
    const [uid, gid] = owner(h, user, group);
    fs.chownSync(abs, uid, gid);
    fs.chmodSync(abs, mode);
  }

  // ---------------------------------------------------------------- chatmail.ini
  /** chatmaild config.py as far as the stand-in needs it. */
  function readShape(iniFile) {
    const params = {};
    let section = null;
    let last = null;
    for (const raw of fs.readFileSync(iniFile, 'utf8').split('\n')) {
      const t = raw.trim();
      if (!t || t.startsWith('#') || t.startsWith(';')) continue;
      if (/^\s/.test(raw) && last !== null && section === 'params') {
        params[last] += '\n' + t;
        continue;
      }
      const m = /^\[([^\]]+)\]/.exec(t);
      if (m) {
        section = m[1];
        last = null;
        continue;
      }
      const eq = t.indexOf('=');
      if (eq > 0 && section === 'params') {
        last = t.slice(0, eq).trim();
        params[last] = t.slice(eq + 1).trim();
      }
    }
    const domain = (params.mail_domain || '').trim();
    const ipv4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(domain);
    const external = (params.tls_external_cert_and_key || '').trim();
    let tls;
    if (external) {
      const parts = external.split(/\s+/);
      if (parts.length !== 2) throw new IniError('tls_external_cert_and_key must have two space-separated paths: CERT_PATH KEY_PATH');
      tls = { mode: 'external', cert: parts[0], key: parts[1] };
    } else if (domain.startsWith('_') || ipv4) tls = { mode: 'self', cert: '/etc/ssl/certs/mailserver.pem', key: '/etc/ssl/private/mailserver.key' };
    else tls = { mode: 'acme', cert: '/var/lib/acme/live/' + domain + '/fullchain', key: '/var/lib/acme/live/' + domain + '/privkey' };
    const mailboxes = (params.mailboxes_dir || '/home/vmail/mail/' + domain).trim();
    return { domain, ipv4, tls, mailboxes, enableIroh: params.iroh_relay === undefined, mtail: Boolean(params.mtail_address), acmeEmail: params.acme_email || '' };
  }
  class IniError extends Error {}

  // ---------------------------------------------------------------- what the stages do
  /** Debian's postfix start: the chroot copies (configure-instance.sh) and the master's pid file. */
  function postfixStarted(h) {
    const spool = path.join(h.root, 'var/spool/postfix');
    if (!fs.existsSync(spool)) return;
    const [pUid, pGid] = [0, 0];
    fs.mkdirSync(path.join(spool, 'etc'), { recursive: true, mode: 0o755 });
    for (const f of ['localtime', 'hosts', 'resolv.conf', 'services', 'nsswitch.conf', 'host.conf']) {
      const src = path.join(h.root, 'etc', f);
      let st;
      try {
        st = fs.statSync(src);
      } catch {
        continue;
      }
      if (!st.isFile()) continue;
      const dst = path.join(spool, 'etc', f);
      fs.copyFileSync(src, dst);
      fs.chownSync(dst, pUid, pGid);
      fs.chmodSync(dst, 0o644);
    }
    fs.mkdirSync(path.join(spool, 'pid'), { recursive: true, mode: 0o755 });
    writeAtomic(path.join(spool, 'pid/master.pid'), String(100000 + (process.pid % 100000)).padStart(10) + '\n', 0o644);
  }

  /** Every deployer's install stage, as far as it changes the host: users, groups, package starts. */
  function install(h) {
    out('--> Starting operation: Create vmail user (server.user)');
    // An old host has its users; the stand-in's identity carries the new host's ids.
    if (h.role !== 'new') return;
    addNames(path.join(h.root, 'etc/passwd'), config.identity.passwd);
    addNames(path.join(h.root, 'etc/group'), config.identity.group);
    out('    [' + call.host + '] Success');
    // Debian's postfix and opendkim packages start their daemons when installed (cmdeploy
    // blocks that only for unbound, dovecot and nginx, with policy-rc.d). On a new host the
    // stand-in takes every install,configure call as one that (re)installs them: the worst case.
    if (h.role !== 'new') return;
    start(h, 'postfix');
    if (!shape.ipv4) start(h, 'opendkim');
  }

  /** Every deployer's configure stage, as far as it writes into carried roots. */
  function configure(h) {
    const d = shape.domain;
    // external/deployer.py ExternalTlsDeployer.configure, before it writes anything.
    if (shape.tls.mode === 'external') {
      for (const p of [shape.tls.cert, shape.tls.key]) {
        let ok = false;
        try {
          ok = fs.statSync(path.join(h.root, p)).isFile();
        } catch {}
        if (!ok) {
          out('--> Starting operation: Verify external TLS files');
          out('    [' + call.host + '] Exception: External TLS file not found on server: ' + p);
          out('--> pyinfra error: No hosts remaining!');
          return 'External TLS file not found on server: ' + p;
        }
      }
    }
    if (model.configureWrites) {
      if (model.createMailboxesDir) {
        out('--> Starting operation: Ensure directory ' + shape.mailboxes + ' (files.directory)');
        ensureDir(h, shape.mailboxes, 0o700, 'vmail');
      }
      if (shape.tls.mode === 'acme') {
        // acmetool/__init__.py AcmetoolDeployer.configure
        putFile(h, 'var/lib/acme/conf/responses', '"acme-enter-email": "' + shape.acmeEmail + '"\n"acme-agreement:https://letsencrypt.org/documents/LE-SA-v1.8-July-06-2026.pdf": true\n', 0o644, 'root');
        putFile(
          h,
          'var/lib/acme/conf/target',
          'request:\n  provider: https://acme-v02.api.letsencrypt.org/directory\n  key:\n    type: ecdsa\n    ecdsa-curve: nistp256\n  challenge:\n    webroot-paths:\n    - /var/www/html/.well-known/acme-challenge\n',
          0o644,
          'root',
        );
        const desired = path.join(h.root, 'var/lib/acme/desired');
        for (const n of fs.existsSync(desired) ? fs.readdirSync(desired) : []) if (n.startsWith(d + '-')) fs.rmSync(path.join(desired, n), { force: true });
        putFile(h, 'var/lib/acme/desired/' + d, 'satisfy:\n  names:\n  - ' + d + '\n  - mta-sts.' + d + '\n  - www.' + d + '\n', 0o644, 'root');
      } else if (shape.tls.mode === 'self' && !fs.existsSync(path.join(h.root, shape.tls.cert))) {
        // selfsigned/deployer.py: [ -f CERT ] || openssl req -x509 ... -keyout KEY -out CERT
        out('--> Starting operation: Generate self-signed TLS certificate if not present (server.shell)');
        const pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
        const key = path.join(h.root, shape.tls.key);
        const cert = path.join(h.root, shape.tls.cert);
        fs.mkdirSync(path.dirname(key), { recursive: true, mode: 0o755 });
        fs.mkdirSync(path.dirname(cert), { recursive: true, mode: 0o755 });
        writeAtomic(key, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }), 0o600);
        // Not a certificate a client accepts: the stand-in only needs the file upstream makes.
        writeAtomic(cert, '-----BEGIN CERTIFICATE-----\n' + crypto.randomBytes(300).toString('base64') + '\n-----END CERTIFICATE-----\n', 0o644);
      }
    }
    if (!shape.ipv4) {
      // opendkim/deployer.py OpendkimDeployer.configure
      const keys = path.join(h.root, 'etc/dkimkeys');
      const key = path.join(keys, 'opendkim.private');
      const [uid, gid] = owner(h, 'opendkim');
      if (model.configureWrites) {
        if (!fs.existsSync(keys)) ensureDir(h, 'etc/dkimkeys', 0o750, 'opendkim');
        putFile(h, 'etc/dkimkeys/KeyTable', 'opendkim._domainkey.' + d + ' ' + d + ':opendkim:/etc/dkimkeys/opendkim.private\n', 0o644, 'opendkim');
        putFile(h, 'etc/dkimkeys/SigningTable', '*@' + d + ' opendkim._domainkey.' + d + '\n', 0o644, 'opendkim');
        ensureDir(h, 'var/spool/postfix/opendkim', 0o750, 'opendkim');
      }
      if (!fs.existsSync(key)) {
        // opendkim-genkey -D /etc/dkimkeys -d DOMAIN -s opendkim, as user opendkim: on Debian
        // 12 its `openssl genrsa` writes PKCS#8.
        out('--> Starting operation: Generate OpenDKIM domain keys (server.shell)');
        fs.mkdirSync(keys, { recursive: true, mode: 0o750 });
        fs.chownSync(keys, uid, gid);
        fs.chmodSync(keys, 0o750);
        const pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
        const pub = pair.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
        writeAtomic(key, pair.privateKey.export(model.configureWrites ? { type: 'pkcs8', format: 'pem' } : { type: 'pkcs1', format: 'pem' }), 0o600);
        fs.chownSync(key, uid, gid);
        const txt = path.join(keys, 'opendkim.txt');
        writeAtomic(txt, 'opendkim._domainkey\tIN\tTXT\t( "v=DKIM1; h=sha256; k=rsa; "\n\t  "p=' + pub + '" )  ; ----- DKIM key opendkim for ' + d + '\n', 0o644);
        fs.chownSync(txt, uid, gid);
        out('    [' + call.host + '] Success');
      }
      // files.file(... user="opendkim", group="opendkim"): always.
      if (model.configureWrites) fs.chownSync(key, uid, gid);
    }
    return null;
  }

  /** The activate stage; with --disable-mail, dovecot and postfix are stopped in their turn. */
  function activate(h, disableMail) {
    for (const [unit, what] of activateUnitsFor(shape, model, config.units)) {
      if (disableMail && (unit === 'dovecot' || unit === 'postfix')) {
        if (hasFault('keep-mail-' + unit)) {
          call.fault = 'keep-mail-' + unit;
          continue;
        }
        stop(h, unit);
        out('    [' + call.host + '] Stop and disable ' + unit + '.service');
        continue;
      }
      // pyinfra's running=False stops a unit whose SubState is running or exited; a oneshot
      // run in progress is "start" (activating here) and is left alone.
      if (what === 'stop') stop(h, unit);
      else start(h, unit);
    }
  }

  // ---------------------------------------------------------------- the call
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

  let shape;
  function run() {
    const disable = argv.length === 4 && argv[3] === '--disable-mail';
    if (!(argv[0] === 'run' && argv[1] === '--ssh-host' && (argv.length === 3 || disable))) {
      return unexpected('argv ' + JSON.stringify(argv) + ', expected ["run","--ssh-host",HOST] or ["run","--ssh-host",HOST,"--disable-mail"]');
    }
    call.host = argv[2];
    const h = Object.prototype.hasOwnProperty.call(config.hosts, call.host) ? config.hosts[call.host] : undefined;
    if (!h) return unexpected('--ssh-host ' + JSON.stringify(call.host) + ' is none of the hosts ' + Object.keys(config.hosts).join(', '));
    let real = cwd;
    try {
      real = fs.realpathSync(cwd);
    } catch {}
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

    // cmdeploy.py add_config_option: Path(os.environ.get("CHATMAIL_INI", "chatmail.ini")),
    // read before anything else.
    const ini = path.resolve(cwd, process.env.CHATMAIL_INI !== undefined ? process.env.CHATMAIL_INI : 'chatmail.ini');
    if (!fs.existsSync(ini)) {
      process.stderr.write('expecting ' + (process.env.CHATMAIL_INI !== undefined ? process.env.CHATMAIL_INI : 'chatmail.ini') + ' to exist, run init first?\n');
      return finish('ok', 1);
    }
    try {
      shape = readShape(ini);
    } catch (err) {
      if (!(err instanceof IniError)) throw err;
      process.stderr.write(err.message + '\n');
      return finish('ok', 1);
    }
    out('[ssh] root@' + call.host + ': connected');
    out('--> Running stages ' + (stages === null ? 'install,configure,activate' : stages) + ' on ' + call.host + (disable ? ' (mail disabled)' : ''));
    const fail = 'fail-' + call.action;
    if (hasFault(fail)) {
      call.fault = fail;
      for (const line of FAILURES[call.action]) out(line.replace('HOST', call.host));
      process.stderr.write('Deploy failed\n');
      return finish('ok', 1);
    }
    const full = stages === null;
    // The legacy stand-in's full deploys only switched units.
    const stageList = full ? (model.configureWrites ? ['install', 'configure', 'activate'] : ['activate']) : stages.split(',');
    for (const stage of stageList) {
      if (stage === 'install') install(h);
      else if (stage === 'configure') {
        const failed = configure(h);
        if (failed) {
          process.stderr.write('Deploy failed\n');
          return finish('ok', 1);
        }
      } else if (call.action === 'disable-mail' && !model.upstreamUnits) {
        // As before: --disable-mail stops postfix and dovecot and touches nothing else.
        for (const unit of ['postfix', 'dovecot']) {
          if (hasFault('keep-mail-' + unit)) {
            call.fault = 'keep-mail-' + unit;
            continue;
          }
          stop(h, unit);
        }
        out('    [' + call.host + '] Stop and disable postfix.service, dovecot.service');
      } else activate(h, call.action === 'disable-mail');
    }
    waitForServices(h, call.started.concat(call.stopped));
    process.stderr.write('Deploy completed, call `cmdeploy dns` next.\n');
    finish('ok', 0);
  }

  try {
    run();
  } catch (err) {
    process.stderr.write('cmdeploy stand-in crashed: ' + ((err && err.stack) || err) + '\n');
    finish('unexpected: the stand-in crashed: ' + ((err && err.message) || err), 1);
  }
}

/**
 * The announced-call mode (test/support/relay-checkout.ts): every call must be the one the
 * test announced in `<state>/expect.json` (exact argv, CMDEPLOY_STAGES value or absence,
 * working directory = checkout root); it parses `run` options as the real argparse does,
 * touches no host, and exits as announced. Calls are logged in `<state>/calls.jsonl` as
 * { argv, cwd, stages, verdict, exit }.
 */
function announced(scriptFile, stateName) {
  const checkout = path.dirname(path.dirname(fs.realpathSync(scriptFile)));
  const state = path.join(checkout, stateName);
  const argv = process.argv.slice(2);
  const stages = Object.prototype.hasOwnProperty.call(process.env, 'CMDEPLOY_STAGES') ? process.env.CMDEPLOY_STAGES : null;
  const cwd = process.cwd();

  function finish(verdict, exit) {
    fs.mkdirSync(state, { recursive: true });
    fs.appendFileSync(path.join(state, 'calls.jsonl'), JSON.stringify({ argv, cwd, stages, verdict, exit }) + '\n');
    process.exitCode = exit;
  }
  function unexpected(why) {
    process.stderr.write('fake cmdeploy: unexpected call: ' + why + '\n');
    finish('unexpected: ' + why, 1);
  }

  function run() {
    // The announced call, used up by this one: a second call must be announced again.
    const expectFile = path.join(state, 'expect.json');
    let expected;
    try {
      expected = JSON.parse(fs.readFileSync(expectFile, 'utf8'));
      fs.renameSync(expectFile, expectFile + '.used');
    } catch {
      return unexpected('no call was expected');
    }

    // argparse, as the real cmdeploy's "run" subcommand has it.
    if (argv[0] !== 'run') return unexpected('subcommand ' + JSON.stringify(argv[0]) + ' is not run');
    // cmdeploy.py add_config_option: --config, default $CHATMAIL_INI or chatmail.ini.
    const opts = { sshHost: undefined, disableMail: false, config: process.env.CHATMAIL_INI !== undefined ? process.env.CHATMAIL_INI : 'chatmail.ini' };
    for (let i = 1; i < argv.length; i++) {
      const a = argv[i];
      if (a === '--ssh-host' || a === '--config') {
        if (i + 1 >= argv.length) return unexpected(a + ' without a value');
        if (a === '--ssh-host') opts.sshHost = argv[++i];
        else opts.config = argv[++i];
      } else if (a === '--disable-mail') opts.disableMail = true;
      else if (a === '--dry-run' || a === '--skip-dns-check' || a === '--verbose' || a === '-v') continue;
      else return unexpected('unknown argument ' + JSON.stringify(a));
    }

    if (JSON.stringify(argv) !== JSON.stringify(expected.argv)) return unexpected('argv ' + JSON.stringify(argv) + ', expected ' + JSON.stringify(expected.argv));
    if (stages !== expected.stages) return unexpected('CMDEPLOY_STAGES ' + JSON.stringify(stages) + ', expected ' + JSON.stringify(expected.stages));
    if (cwd !== checkout) return unexpected('working directory ' + cwd + ', expected the checkout ' + checkout);

    // The real one reads chatmail.ini from the working directory before anything else.
    if (!fs.existsSync(path.resolve(cwd, opts.config))) {
      process.stderr.write('expecting ' + opts.config + ' to exist, run init first?\n');
      return finish('ok', 1);
    }
    // Deployment.perform_stages: split on commas, no trimming; an unknown stage is a crash.
    const list = (stages === null ? 'install,configure,activate' : stages).split(',');
    for (const s of list) if (!['install', 'configure', 'activate'].includes(s)) return unexpected('stage ' + JSON.stringify(s));

    const host = opts.sshHost;
    process.stdout.write('[ssh] login to ' + host + '\n');
    for (const s of list) process.stdout.write('--> ' + s + ' on ' + host + '\n');
    if (opts.disableMail && list.includes('activate')) process.stdout.write('    [' + host + '] Stop and disable postfix.service, dovecot.service\n');
    if (expected.exit === 1) {
      process.stderr.write('Deploy failed\n');
      return finish('ok', 1);
    }
    process.stderr.write('Deploy completed, call `cmdeploy dns` next.\n');
    process.stdout.write('last line without a newline');
    finish('ok', 0);
  }
  run();
}

module.exports = { main, announced, activateUnitsFor };
