/**
 * A stand-in chatmail/relay checkout: chatmail.ini, CHANGELOG.md, the cmdeploy sources that
 * decide whether CMDEPLOY_STAGES is honoured, and a `scripts/cmdeploy` that behaves like the
 * real one for the calls cmmigrate makes (reads chatmail.ini from its working directory,
 * takes the real options, splits CMDEPLOY_STAGES on commas, exits 0 or 1) and is strict:
 * every call must be the one the test announced with `expectCmdeployCall` (exact argv,
 * CMDEPLOY_STAGES value or absence, working directory = checkout root). Anything else is
 * logged as unexpected and exits 1, so a wrong call fails the test.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

export interface CheckoutOptions {
  mailDomain?: string;
  /** Written as `mailboxes_dir = ...` when given. */
  mailboxesDir?: string;
  /** The newest release in CHANGELOG.md; none when undefined. */
  release?: string;
  /** An "## untagged" section above the release. */
  unreleased?: boolean;
  /**
   * How the cmdeploy sources read CMDEPLOY_STAGES: `basedeploy` as in current releases
   * (Deployment.perform_stages), `deployer` as the first releases with stages did
   * (Deployer.__init__), `none` as before 1.8.0.
   */
  stages: 'basedeploy' | 'deployer' | 'none';
}

export interface ExpectedCall {
  argv: string[];
  /** The exact CMDEPLOY_STAGES, or null: it must be absent. */
  stages: string | null;
  /** What to exit with when the call is right; default 0. */
  exit?: 0 | 1;
}

export interface LoggedCall {
  argv: string[];
  cwd: string;
  stages: string | null;
  /** "ok", or "unexpected: why". */
  verdict: string;
  exit: number;
}

const STATE = '.fake-cmdeploy';

/** The stand-in, as a Node script run by this very node binary. */
function fakeCmdeploy(): string {
  return `#!${process.execPath}
'use strict';
const fs = require('fs');
const path = require('path');
const checkout = path.dirname(path.dirname(fs.realpathSync(__filename)));
const state = path.join(checkout, ${JSON.stringify(STATE)});
const argv = process.argv.slice(2);
const stages = Object.prototype.hasOwnProperty.call(process.env, 'CMDEPLOY_STAGES') ? process.env.CMDEPLOY_STAGES : null;
const cwd = process.cwd();

function finish(verdict, exit) {
  fs.mkdirSync(state, { recursive: true });
  fs.appendFileSync(path.join(state, 'calls.jsonl'), JSON.stringify({ argv, cwd, stages, verdict, exit }) + '\\n');
  process.exitCode = exit;
}
function unexpected(why) {
  process.stderr.write('fake cmdeploy: unexpected call: ' + why + '\\n');
  finish('unexpected: ' + why, 1);
}

function main() {
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
  const opts = { sshHost: undefined, disableMail: false, config: 'chatmail.ini' };
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
    process.stderr.write('expecting ' + opts.config + ' to exist, run init first?\\n');
    return finish('ok', 1);
  }
  // Deployment.perform_stages: split on commas, no trimming; an unknown stage is a crash.
  const list = (stages === null ? 'install,configure,activate' : stages).split(',');
  for (const s of list) if (!['install', 'configure', 'activate'].includes(s)) return unexpected('stage ' + JSON.stringify(s));

  const host = opts.sshHost;
  process.stdout.write('[ssh] login to ' + host + '\\n');
  for (const s of list) process.stdout.write('--> ' + s + ' on ' + host + '\\n');
  if (opts.disableMail && list.includes('activate')) process.stdout.write('    [' + host + '] Stop and disable postfix.service, dovecot.service\\n');
  if (expected.exit === 1) {
    process.stderr.write('Deploy failed\\n');
    return finish('ok', 1);
  }
  process.stderr.write('Deploy completed, call \`cmdeploy dns\` next.\\n');
  process.stdout.write('last line without a newline');
  finish('ok', 0);
}
main();
`;
}

function changelog(o: CheckoutOptions): string {
  const lines = ['# Changelog for chatmail deployment', ''];
  if (o.unreleased) lines.push('## untagged', '', '- something after the release', '');
  if (o.release) lines.push(`## ${o.release} 2025-06-01`, '', '- a release', '');
  lines.push('## 1.1.0 - 2024-03-28', '', '- the first recorded release', '');
  return lines.join('\n');
}

/** The cmdeploy sources, by the way they read CMDEPLOY_STAGES. */
function sources(how: CheckoutOptions['stages']): Record<string, string> {
  const common: Record<string, string> = {
    '__init__.py': '',
    'cmdeploy.py': 'import os\n\ndef run_cmd(args, out):\n    env = os.environ.copy()\n    return out.check_call("pyinfra ...", env=env)\n',
    // Mentions that must not count: a test, and a comment.
    'tests/test_stages.py': 'import os\n\ndef test_stages(monkeypatch):\n    monkeypatch.setenv("CMDEPLOY_STAGES", "activate")\n',
    'deployers.py': '# CMDEPLOY_STAGES = "install" would be read by a later release\n\ndef deploy_chatmail(config_path, disable_mail, website_only):\n    pass\n',
  };
  if (how === 'basedeploy') {
    common['basedeploy.py'] = [
      'import os',
      '',
      'class Deployment:',
      '    def perform_stages(self, deployers):',
      '        default_stages = "install,configure,activate"',
      '        stages = os.getenv("CMDEPLOY_STAGES", default_stages).split(",")',
      '        for stage in stages:',
      '            for deployer in deployers:',
      '                getattr(self, stage)(deployer)',
      '',
    ].join('\n');
  } else if (how === 'deployer') {
    common['deployer.py'] = [
      'import os',
      '',
      'class Deployer:',
      '    def __init__(self, **kwargs):',
      '        default_stages = "install,configure,activate"',
      '        self.stages = os.getenv("CMDEPLOY_STAGES", default_stages).split(",")',
      '',
    ].join('\n');
  }
  return common;
}

/** Writes a file of a checkout, making its directories. */
async function put(dir: string, rel: string, text: string, mode = 0o644): Promise<void> {
  await fsp.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
  await fsp.writeFile(path.join(dir, rel), text, { mode });
}

/**
 * Everything of a checkout but `scripts/cmdeploy`: chatmail.ini, CHANGELOG.md and the
 * cmdeploy sources that stage detection reads. For stand-ins with another cmdeploy script.
 */
export async function writeCheckoutSources(dir: string, o: CheckoutOptions): Promise<void> {
  const ini = ['[params]', '', '# mail domain (MUST be set to fully qualified chat mail domain)', `mail_domain = ${o.mailDomain ?? 'mail.example.org'}`, ''];
  if (o.mailboxesDir) ini.push(`mailboxes_dir = ${o.mailboxesDir}`);
  ini.push('max_user_send_per_minute = 60', 'passthrough_recipients =', '    echo@example.org', '    @example.net', '');
  await put(dir, 'chatmail.ini', ini.join('\n'));
  await put(dir, 'CHANGELOG.md', changelog(o));
  // The docker setup mentions the variable too; it is no part of cmdeploy.
  await put(dir, 'docker/files/setup_chatmail_docker.sh', 'export CMDEPLOY_STAGES="${CMDEPLOY_STAGES:-configure,activate}"\n');
  for (const [rel, text] of Object.entries(sources(o.stages))) await put(dir, path.join('cmdeploy/src/cmdeploy', rel), text);
}

/** Writes a checkout into `dir` (created). Returns `dir`. */
export async function makeRelayCheckout(dir: string, o: CheckoutOptions): Promise<string> {
  await writeCheckoutSources(dir, o);
  await put(dir, 'scripts/cmdeploy', fakeCmdeploy(), 0o755);
  return dir;
}

/** Announces the next call the stand-in must get. */
export async function expectCmdeployCall(dir: string, call: ExpectedCall): Promise<void> {
  await fsp.mkdir(path.join(dir, STATE), { recursive: true });
  await fsp.writeFile(path.join(dir, STATE, 'expect.json'), JSON.stringify(call));
}

/** Every call the stand-in got, in order. */
export async function cmdeployCalls(dir: string): Promise<LoggedCall[]> {
  const text = await fsp.readFile(path.join(dir, STATE, 'calls.jsonl'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LoggedCall);
}
