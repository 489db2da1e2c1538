/**
 * A stand-in chatmail/relay checkout: chatmail.ini, CHANGELOG.md, the cmdeploy sources that
 * decide whether CMDEPLOY_STAGES is honoured, and a `scripts/cmdeploy` that behaves like the
 * real one for the calls cmmigrate makes (reads chatmail.ini from its working directory,
 * takes the real options, splits CMDEPLOY_STAGES on commas, exits 0 or 1) and is strict:
 * every call must be the one the test announced with `expectCmdeployCall` (exact argv,
 * CMDEPLOY_STAGES value or absence, working directory = checkout root). Anything else is
 * logged as unexpected and exits 1, so a wrong call fails the test. The script is the one
 * cmdeploy stand-in (test/support/standin-cmdeploy.js) in its announced-call mode.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { REPO } from './harness';

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
/** The stand-in's code, shared with standin-relay.ts (from the sources: the build does not copy scripts). */
const STANDIN_JS = path.join(REPO, 'test', 'support', 'standin-cmdeploy.js');

/** The checkout's `scripts/cmdeploy`: the one cmdeploy stand-in, in its announced-call mode. */
function fakeCmdeploy(): string {
  return `#!${process.execPath}
'use strict';
// cmmigrate's stand-in for chatmail/relay's cmdeploy: see test/support/relay-checkout.ts.
require(${JSON.stringify(STANDIN_JS)}).announced(__filename, ${JSON.stringify(STATE)});
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
