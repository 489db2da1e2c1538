/**
 * `cmmigrate install-agent old|new`: puts the bundled agent on a relay host over ssh and
 * runs it as a systemd service bound to the plan's agent address. Every change is guarded
 * by a check, so a second run changes nothing that is already right (files are compared
 * by SHA-256; a different bundle is an upgrade). All checks come before the first change;
 * a failure after it undoes what this run did, so nothing is left half-installed.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Command, Argument } from 'commander';
import * as tar from 'tar-stream';
import { CmError, ExitCode } from '../../proto';
import { createOutput, formatBytes, type Output } from '../output';
import { loadPlan } from '../plan';
import { loadTls } from '../pki';
import { checkHost, nodeUsable, parseLines, parseProbe, portConflicts, valueOf, type HostFacts } from '../remote-facts';
import { agentBundlePath, managedFiles, remoteLayout, remotePrefix, renderUnit, UNIT_NAME, type ManagedFile, type RemoteLayout } from '../remote-layout';
import {
  applyScript,
  commitScript,
  EXIT_NOT_LISTENING,
  installNodeScript,
  probeScript,
  rollbackScript,
  type RollbackInputs,
} from '../remote-scripts';
import { runRemote, type RemoteResult, type SshTarget } from '../ssh';
import { describeAgent, statusEvent, waitForAgent, type AgentStatus, type Side } from './agents';

export interface InstallAgentOptions {
  plan: string;
  side: Side;
  /** Environment for ssh and the remote prefix (tests); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** How long to wait for the started agent to answer over mTLS. */
  answerTimeoutMs?: number;
}

export interface InstallAgentResult {
  side: Side;
  /** Names of the files written; empty when everything was in place. */
  written: string[];
  started: boolean;
  /** Packages apt-get installed in this run. */
  installedPackages: string[];
  agent: AgentStatus;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The uploaded files as one tar (flat names), for `tar -x` on the host. */
async function tarOf(files: { name: string; data: Buffer; mode: number }[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const f of files) pack.entry({ name: f.name, mode: f.mode, uid: 0, gid: 0, mtime: new Date() }, f.data);
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

function lastLines(text: string, n = 5): string {
  return text.trim().split('\n').filter(Boolean).slice(-n).join(' | ');
}

/** apt's own error lines ("E: ..."), else its last lines. */
function aptMessage(stderr: string): string {
  const errors = stderr.split('\n').filter((l) => l.startsWith('E: '));
  return errors.length ? errors.slice(-3).join(' | ') : lastLines(stderr, 3);
}

/** A script that ended with an exit code other than 0, as the error a person reads. */
export function remoteFailure(target: SshTarget, what: string, r: RemoteResult): CmError {
  const where = `the ${target.side} host (${target.destination})`;
  const fail = valueOf(parseLines(r.stdout), 'fail');
  const details = { host: target.destination, side: target.side, exit: r.code };
  if (fail === 'apt.install_failed') {
    return new CmError('apt.install_failed', `apt-get could not install nodejs on ${where}: ${aptMessage(r.stderr)}`, {
      hint: `run \`apt-get install nodejs\` there to see the whole message (package sources, a full disk, a held dpkg lock), then run the same command again`,
      details,
    });
  }
  if (fail === 'apt.purge_failed') {
    return new CmError('apt.purge_failed', `apt-get could not remove the packages install-agent installed on ${where}: ${aptMessage(r.stderr)}`, {
      hint: 'run `apt-get purge nodejs` there to see the whole message, then run the same command again',
      details,
    });
  }
  if (fail === 'uninstall.stop_failed') {
    return new CmError('uninstall.stop_failed', `${UNIT_NAME} is still active on ${where} after systemctl stop`, {
      hint: `look at \`systemctl status ${UNIT_NAME}\` there, then run the same command again`,
      details,
    });
  }
  if (/not been booted with systemd|Failed to connect to bus/.test(r.stderr)) {
    return new CmError('precondition.no_systemd', `${what} failed on ${where}: systemd is not running there (${lastLines(r.stderr, 1)})`, {
      hint: 'install on a Debian host booted with systemd, or start cmmigrate-agent by hand (README: "Starting an agent by hand")',
      details,
      exitCode: ExitCode.precondition,
    });
  }
  return new CmError('remote.failed', `${what} failed on ${where} (exit ${r.code}): ${lastLines(r.stderr) || 'no message'}`, {
    hint: `run the same command again; if it fails the same way, log in (ssh ${target.destination}) and look at /opt/cmmigrate and \`systemctl status ${UNIT_NAME}\``,
    details,
  });
}

interface Change {
  layout: RemoteLayout;
  facts: HostFacts;
  rollback: RollbackInputs;
  /** Whether anything on the host was changed yet. */
  touched: boolean;
}

async function rollBack(target: SshTarget, c: Change, out: Output, env: NodeJS.ProcessEnv): Promise<void> {
  if (!c.touched) return;
  out.info(`install-agent ${target.side}: undoing this run's changes on ${target.destination}`);
  try {
    const r = await runRemote(target, rollbackScript(c.layout, c.rollback), { label: 'undo script', env, timeoutMs: 10 * 60_000, onCommand: (l) => out.info(`  [$ ${l}]`) });
    for (const [k, v] of parseLines(r.stdout)) if (k === 'warning') out.warn(`${target.side} host: ${v}`);
  } catch (err) {
    out.warn(`could not undo the changes on ${target.destination}: ${(err as Error).message}; run cmmigrate uninstall-agent ${target.side} --plan FILE once the host is reachable`);
  }
}

export async function runInstallAgent(opts: InstallAgentOptions, out: Output): Promise<InstallAgentResult> {
  const env = opts.env ?? process.env;
  const plan = await loadPlan(opts.plan);
  const side = opts.side;
  const host = plan[side];
  const target: SshTarget = { side, destination: host.ssh };
  const layout = remoteLayout(remotePrefix(env));
  const bundle = await fsp.readFile(agentBundlePath(env));
  const tls = await loadTls(path.join(plan.tlsDir, side), 'agent');
  const title = `install-agent ${side}`;
  const show = (line: string): void => out.info(`  [$ ${line}]`);

  // 1. Look, change nothing.
  out.info(`${title}: checking ${host.ssh}`);
  const probe = await runRemote(target, probeScript(layout, host.agentPort), { label: 'look-only check script', env, onCommand: show, timeoutMs: 60_000 });
  if (probe.code !== 0) throw remoteFailure(target, 'checking the host', probe);
  const facts = parseProbe(probe.stdout);
  checkHost(target, facts, plan.file);
  out.info(`  ${facts.os.prettyName}; ${facts.systemctl}; ${facts.node ? `node ${facts.node.version} at ${facts.node.path}` : 'no node'}`);
  const taken = portConflicts(facts, host.agentHost, host.agent);
  if (taken.length > 0) {
    throw new CmError('precondition.port_in_use', `port ${host.agentPort} is already in use on the ${side} host (${host.ssh}): something listens on ${taken.map((a) => (a.includes(':') ? `[${a}]` : a)).join(', ')}:${host.agentPort}, so the agent cannot listen on ${host.agent}`, {
      hint: `find the program with \`ss -ltnp 'sport = :${host.agentPort}'\` there and stop it, or choose another port: cmmigrate init --plan ${opts.plan} ... --${side}-agent ${host.agentHost}:PORT, then run install-agent again`,
      details: { host: host.ssh, side, port: host.agentPort, listeners: taken },
      exitCode: ExitCode.precondition,
    });
  }

  const change: Change = {
    layout,
    facts,
    touched: false,
    rollback: {
      written: [],
      wasActive: facts.active === 'active',
      wasEnabled: facts.enabled,
      createdDirs: [...(facts.dirs.dir ? [] : [layout.dir]), ...(facts.dirs.tls ? [] : [layout.tlsDir]), ...(facts.dirs.state ? [] : [layout.stateDir])],
      addedPackages: [],
      markerBefore: facts.packages.join('\n'),
    },
  };
  try {
    // 2. Node.js from Debian, when the host has none that is new enough.
    let node = facts.node;
    if (!nodeUsable(node?.version)) {
      out.info(`${title}: installing Debian's nodejs with apt-get (${node ? `${node.path} is ${node.version}` : 'no node on the host'}; the agent needs 18.19 or newer)`);
      change.touched = true;
      const r = await runRemote(target, installNodeScript(layout), { label: 'apt-get install nodejs script', env, onCommand: show, timeoutMs: 15 * 60_000 });
      const lines = parseLines(r.stdout);
      change.rollback.addedPackages = (valueOf(lines, 'added') ?? '').split(/\s+/).filter(Boolean);
      if (r.code !== 0) throw remoteFailure(target, 'installing nodejs', r);
      node = { path: valueOf(lines, 'node_path') ?? '/usr/bin/node', version: valueOf(lines, 'node_version') ?? '' };
      if (!nodeUsable(node.version)) {
        throw new CmError('install.node_too_old', `Debian's nodejs on the ${side} host (${host.ssh}) is ${node.version || 'not runnable'}; the agent needs 18.19 or newer`, {
          hint: 'update the host (apt-get update && apt-get upgrade: Debian 12 ships 18.19 since 12.5), then run the same command again',
          details: { host: host.ssh, side },
        });
      }
      out.info(`  apt-get added ${change.rollback.addedPackages.join(', ') || 'nothing'}; node ${node.version} at ${node.path}`);
    }

    // 3. Files: upload what differs.
    const unit = renderUnit(layout, { node: node!.path, listen: host.agent, mailboxesDir: plan.mailboxesDir, side });
    const content: Record<string, Buffer> = {
      'cmmigrate-agent.js': bundle,
      'ca.crt': tls.ca,
      'agent.crt': tls.cert,
      'agent.key': tls.key,
      [UNIT_NAME]: Buffer.from(unit),
    };
    const files = managedFiles(layout);
    const install = files.filter((f) => facts.files[f.name]?.sha256 !== sha256(content[f.name]));
    const drift = files.filter((f) => {
      const s = facts.files[f.name];
      return s && !install.includes(f) && (s.mode !== f.mode || s.uid !== 0 || s.gid !== 0);
    });
    // An active unit whose agent does not listen is broken: start it afresh.
    const restart = install.length > 0 || facts.active !== 'active' || facts.listeners.length === 0;
    const needApply = restart || drift.length > 0 || !facts.enabled || change.rollback.createdDirs.length > 0;

    if (!needApply) {
      out.info(`${title}: everything is in place and ${UNIT_NAME} is active; nothing to change`);
    } else {
      if (install.length > 0) {
        const what = install.map((f: ManagedFile) => (f.name === 'cmmigrate-agent.js' ? `${f.name} (${formatBytes(bundle.length)}${facts.files[f.name] ? ', an upgrade' : ''})` : f.name));
        out.info(`${title}: uploading ${what.join(', ')} to ${layout.dir}${install.some((f) => f.name === UNIT_NAME) ? ` and ${layout.unitDir}` : ''}`);
      }
      if (drift.length > 0) out.info(`${title}: setting owner root and modes of ${drift.map((f) => f.path).join(', ')}`);
      if (restart) out.info(`${title}: ${facts.active === 'active' ? 'restarting' : 'starting'} ${UNIT_NAME} on ${host.agent}`);
      const upload = await tarOf(install.map((f) => ({ name: f.name, data: content[f.name], mode: f.mode })));
      change.touched = true;
      change.rollback.written = install.map((f) => ({ file: f, existed: !!facts.files[f.name] }));
      const r = await runRemote(target, applyScript(layout, { install, daemonReload: install.some((f) => f.name === UNIT_NAME), restart, port: host.agentPort }), {
        label: 'install and start script; stdin: tar of the files',
        env,
        input: upload,
        onCommand: show,
        timeoutMs: 5 * 60_000,
      });
      if (r.code === EXIT_NOT_LISTENING) {
        const lines = parseLines(r.stdout);
        const log = lines.filter(([k]) => k === 'log').map(([, v]) => v);
        throw new CmError('install.agent_not_started', `the agent on the ${side} host (${host.ssh}) did not start listening on ${host.agent} (unit ${valueOf(lines, 'state') || 'state unknown'})${log.length ? `; its log ends: ${log.slice(-4).join(' | ')}` : ''}`, {
          hint: `read \`journalctl -u ${UNIT_NAME}\` there; check that ${host.agentHost} is an address of that host (${side}.agent in ${opts.plan}); then run install-agent again`,
          details: { host: host.ssh, side, log },
        });
      }
      if (r.code !== 0) throw remoteFailure(target, 'installing the agent', r);
    }

    // 4. The agent must answer the controller over mutual TLS.
    out.info(`${title}: waiting for the agent to answer on ${host.agent} over mutual TLS`);
    const agent = await waitForAgent(plan, side, opts.answerTimeoutMs ?? 15_000);
    if (agent.error) {
      const e = agent.error;
      const transport = e.code === 'connect.unavailable' || e.code === 'connect.timeout';
      throw transport
        ? new CmError('install.agent_unreachable', `the agent listens on ${host.agent} on the ${side} host (${host.ssh}), but this machine cannot reach it: ${e.message}`, {
            hint: `a firewall (or a cloud security group) is in the way, or ${host.agentHost} is not the host's public address: let TCP ${host.agentPort} in from this machine and from the other host, then run install-agent again`,
            details: { host: host.ssh, side, cause_code: e.code },
            cause: e,
          })
        : new CmError(e.code, `the agent on the ${side} host (${host.ssh}) answers, but: ${e.message}`, { hint: e.hint, cause: e, details: e.details });
    }
    if (change.touched) {
      const c = await runRemote(target, commitScript(layout), { label: 'commit script', env, timeoutMs: 60_000 }).catch((err: Error) => ({ code: -1, stdout: '', stderr: err.message }));
      if (c.code !== 0) out.warn(`could not clear ${layout.dir}/.rollback on ${host.ssh} (${lastLines(c.stderr, 1)}); the agent runs; run install-agent again to tidy up`);
    }
    out.info(`${title}: the agent answers`);
    for (const line of describeAgent(agent, plan.mailboxesDir)) out.item(line);
    out.event({ event: 'installed', ...statusEvent(agent), written: install.map((f) => f.name), started: restart, installed_packages: change.rollback.addedPackages });
    return { side, written: install.map((f) => f.name), started: restart, installedPackages: change.rollback.addedPackages, agent };
  } catch (err) {
    await rollBack(target, change, out, env);
    throw err;
  }
}

export function installAgentCommand(): Command {
  return new Command('install-agent')
    .description('install the agent on the old or new host over ssh and start it as a systemd service')
    .addArgument(new Argument('<side>', 'which host of the plan').choices(['old', 'new']))
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .option('--json', 'print one JSON result object on stdout')
    .addHelpText(
      'after',
      `
Over the system ssh (BatchMode: no prompts; ~/.ssh/config and ssh-agent apply; extra
options in CMMIGRATE_SSH_OPTS), as the plan's <side>.ssh (default root@HOST):
checks for Debian 12 or 13 with systemd, installs Debian's nodejs if no Node.js 18.19+
is there, uploads the agent and its TLS material to /opt/cmmigrate, starts
${UNIT_NAME} on the plan's agent address, and waits until it answers.
Running it again changes only what differs (an upgrade replaces the agent).

Example:
  cmmigrate install-agent new --plan plan.toml`,
    )
    .action(async (side: Side, o: { plan: string; json?: boolean }) => {
      await runInstallAgent({ plan: o.plan, side }, createOutput(!!o.json));
    });
}
