/**
 * Install, for `cmmigrate install-agent old|new`: puts the bundled agent on a relay host over ssh and
 * runs it as a systemd service bound to the plan's agent address. Every change is guarded
 * by a check, so a second run changes nothing that is already right (files are compared
 * by SHA-256; a different bundle is an upgrade). All checks come before the first change;
 * a failure after it undoes what this run did, so nothing is left half-installed.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import * as tar from 'tar-stream';
import { CmError, DEFAULT_AGENT_PORT, ExitCode, RERUN } from '../../proto';
import type { Plan } from '../plan';
import { formatBytes, type Reporter } from '../report';
import { loadTls } from '../tls-material';
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
import { debianWarning } from '../relay/debian';
import { relayPortConflict } from '../relay/upstream';
import { runRemote, type RemoteResult, type SshTarget } from '../ssh';
import { describeAgent, statusEvent, waitForAgent, type AgentStatus, type Side } from './agents';
import { lastLines, remoteFailure } from './remote-failure';

export interface InstallAgentOptions {
  /** The plan file as the operator gave it, for hints. */
  planArg: string;
  side: Side;
  /** Environment for ssh and the remote prefix (tests); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** How long to wait for the started agent to answer over mTLS. */
  answerTimeoutMs?: number;
  /** Ctrl-C: stops ssh (step.interrupted); what this run changed is undone. */
  signal?: AbortSignal;
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

interface Change {
  layout: RemoteLayout;
  facts: HostFacts;
  rollback: RollbackInputs;
  /** Whether anything on the host was changed yet. */
  touched: boolean;
}

async function rollBack(target: SshTarget, c: Change, out: Reporter, env: NodeJS.ProcessEnv): Promise<void> {
  if (!c.touched) return;
  out.info(`install-agent ${target.side}: undoing this run's changes on ${target.destination}`);
  try {
    const r = await runRemote(target, rollbackScript(c.layout, c.rollback), { label: 'undo script', env, timeoutMs: 10 * 60_000, onCommand: (l) => out.info(`  [$ ${l}]`) });
    for (const [k, v] of parseLines(r.stdout)) if (k === 'warning') out.warn(`${target.side} host: ${v}`);
  } catch (err) {
    out.warn(`could not undo the changes on ${target.destination}: ${(err as Error).message}; run cmmigrate uninstall-agent ${target.side} --plan FILE once the host is reachable`);
  }
}

/** What the parts of one install share. */
interface Install {
  plan: Plan;
  opts: InstallAgentOptions;
  out: Reporter;
  env: NodeJS.ProcessEnv;
  side: Side;
  host: Plan['old'];
  target: SshTarget;
  layout: RemoteLayout;
  title: string;
  /** The agent bundle and this host's TLS material, read before anything changes. */
  bundle: Buffer;
  tls: Awaited<ReturnType<typeof loadTls>>;
  /** Runs a script over ssh, echoing it; Ctrl-C stops it. */
  remote(script: string, label: string, timeoutMs: number, input?: Buffer): Promise<RemoteResult>;
}

/** 1. Look, change nothing: the host's facts, or why it cannot take the agent. */
async function probeHost(i: Install): Promise<HostFacts> {
  const { host, side, target } = i;
  i.out.info(`${i.title}: checking ${host.ssh}`);
  const probe = await i.remote(probeScript(i.layout, host.agentPort), 'look-only check script', 60_000);
  if (probe.code !== 0) throw remoteFailure(target, 'checking the host', probe);
  const facts = parseProbe(probe.stdout);
  checkHost(target, facts, i.plan.file);
  i.out.info(`  ${facts.os.prettyName}; ${facts.systemctl}; ${facts.node ? `node ${facts.node.version} at ${facts.node.path}` : 'no node'}`);
  const debian = debianWarning(`ID=${facts.os.id}\nVERSION_ID=${facts.os.versionId}\nPRETTY_NAME=${facts.os.prettyName}\n`, `the ${side} host ${host.ssh}`);
  if (debian) i.out.warn(debian);
  const relayPort = relayPortConflict(host.agentPort);
  if (relayPort) {
    throw new CmError('precondition.port_in_use', `the agent cannot listen on ${host.agent} on the ${side} host (${host.ssh}): ${relayPort}`, {
      hint: `choose another port: cmmigrate init --plan ${i.opts.planArg} ... --${side}-agent ${host.agentHost}:PORT (the default ${DEFAULT_AGENT_PORT} is none of the relay's), then run install-agent again`,
      details: { host: host.ssh, side, port: host.agentPort },
      exitCode: ExitCode.precondition,
    });
  }
  const taken = portConflicts(facts, host.agentHost, host.agent);
  if (taken.length > 0) {
    throw new CmError('precondition.port_in_use', `port ${host.agentPort} is already in use on the ${side} host (${host.ssh}): something listens on ${taken.map((a) => (a.includes(':') ? `[${a}]` : a)).join(', ')}:${host.agentPort}, so the agent cannot listen on ${host.agent}`, {
      hint: `find the program with \`ss -ltnp 'sport = :${host.agentPort}'\` there and stop it, or choose another port: cmmigrate init --plan ${i.opts.planArg} ... --${side}-agent ${host.agentHost}:PORT, then run install-agent again`,
      details: { host: host.ssh, side, port: host.agentPort, listeners: taken },
      exitCode: ExitCode.precondition,
    });
  }
  return facts;
}

/** 2. Node.js from Debian, when the host has none that is new enough; the node to run. */
async function ensureNode(i: Install, change: Change): Promise<{ path: string; version: string }> {
  const { host, side, target } = i;
  const node = change.facts.node;
  if (node && nodeUsable(node.version)) return node;
  i.out.info(`${i.title}: installing Debian's nodejs with apt-get (${node ? `${node.path} is ${node.version}` : 'no node on the host'}; the agent needs 18.19 or newer)`);
  change.touched = true;
  const r = await i.remote(installNodeScript(i.layout), 'apt-get install nodejs script', 15 * 60_000);
  const lines = parseLines(r.stdout);
  change.rollback.addedPackages = (valueOf(lines, 'added') ?? '').split(/\s+/).filter(Boolean);
  if (r.code !== 0) throw remoteFailure(target, 'installing nodejs', r);
  const got = { path: valueOf(lines, 'node_path') ?? '/usr/bin/node', version: valueOf(lines, 'node_version') ?? '' };
  if (!nodeUsable(got.version)) {
    throw new CmError('install.node_too_old', `Debian's nodejs on the ${side} host (${host.ssh}) is ${got.version || 'not runnable'}; the agent needs 18.19 or newer`, {
      hint: `update the host (apt-get update && apt-get upgrade: Debian 12 ships 18.19 since 12.5), then run ${RERUN}`,
      details: { host: host.ssh, side },
    });
  }
  i.out.info(`  apt-get added ${change.rollback.addedPackages.join(', ') || 'nothing'}; node ${got.version} at ${got.path}`);
  return got;
}

/** 3. Files: upload what differs, fix what drifted, (re)start the unit when needed. */
async function applyFiles(i: Install, change: Change, node: { path: string }): Promise<{ written: string[]; started: boolean }> {
  const { host, side, layout, title, plan } = i;
  const facts = change.facts;
  const { bundle, tls } = i;
  const unit = renderUnit(layout, { node: node.path, listen: host.agent, mailboxesDir: plan.mailboxesDir, side });
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
  const written = install.map((f) => f.name);
  if (!needApply) {
    i.out.info(`${title}: everything is in place and ${UNIT_NAME} is active; nothing to change`);
    return { written, started: restart };
  }
  if (install.length > 0) {
    const what = install.map((f: ManagedFile) => (f.name === 'cmmigrate-agent.js' ? `${f.name} (${formatBytes(bundle.length)}${facts.files[f.name] ? ', an upgrade' : ''})` : f.name));
    i.out.info(`${title}: uploading ${what.join(', ')} to ${layout.dir}${install.some((f) => f.name === UNIT_NAME) ? ` and ${layout.unitDir}` : ''}`);
  }
  if (drift.length > 0) i.out.info(`${title}: setting owner root and modes of ${drift.map((f) => f.path).join(', ')}`);
  if (restart) i.out.info(`${title}: ${facts.active === 'active' ? 'restarting' : 'starting'} ${UNIT_NAME} on ${host.agent}`);
  const upload = await tarOf(install.map((f) => ({ name: f.name, data: content[f.name], mode: f.mode })));
  change.touched = true;
  change.rollback.written = install.map((f) => ({ file: f, existed: !!facts.files[f.name] }));
  const script = applyScript(layout, { install, daemonReload: install.some((f) => f.name === UNIT_NAME), restart, port: host.agentPort });
  const r = await i.remote(script, 'install and start script; stdin: tar of the files', 5 * 60_000, upload);
  if (r.code === EXIT_NOT_LISTENING) {
    const lines = parseLines(r.stdout);
    const log = lines.filter(([k]) => k === 'log').map(([, v]) => v);
    throw new CmError('install.agent_not_started', `the agent on the ${side} host (${host.ssh}) did not start listening on ${host.agent} (unit ${valueOf(lines, 'state') || 'state unknown'})${log.length ? `; its log ends: ${log.slice(-4).join(' | ')}` : ''}`, {
      hint: `read \`journalctl -u ${UNIT_NAME}\` there; check that ${host.agentHost} is an address of that host (${side}.agent in ${i.opts.planArg}); then run install-agent again`,
      details: { host: host.ssh, side, log },
    });
  }
  if (r.code !== 0) throw remoteFailure(i.target, 'installing the agent', r);
  return { written, started: restart };
}

/** 4. The agent must answer the controller over mutual TLS. */
async function awaitAgent(i: Install, change: Change): Promise<AgentStatus> {
  const { host, side, layout } = i;
  i.out.info(`${i.title}: waiting for the agent to answer on ${host.agent} over mutual TLS`);
  const agent = await waitForAgent(i.plan, side, i.opts.answerTimeoutMs ?? 15_000);
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
    const c = await runRemote(i.target, commitScript(layout), { label: 'commit script', env: i.env, timeoutMs: 60_000 }).catch((err: Error) => ({ code: -1, stdout: '', stderr: err.message }));
    if (c.code !== 0) i.out.warn(`could not clear ${layout.dir}/.rollback on ${host.ssh} (${lastLines(c.stderr, 1)}); the agent runs; run install-agent again to tidy up`);
  }
  i.out.info(`${i.title}: the agent answers`);
  return agent;
}

/** Installs or upgrades the agent on one host over ssh and waits until it answers over mutual TLS. */
export async function runInstallAgent(plan: Plan, opts: InstallAgentOptions, out: Reporter): Promise<InstallAgentResult> {
  const env = opts.env ?? process.env;
  const side = opts.side;
  const target: SshTarget = { side, destination: plan[side].ssh };
  const show = (line: string): void => out.info(`  [$ ${line}]`);
  const i: Install = {
    plan, opts, out, env, side, target,
    host: plan[side],
    layout: remoteLayout(remotePrefix(env)),
    title: `install-agent ${side}`,
    bundle: await fsp.readFile(agentBundlePath(env)),
    tls: await loadTls(path.join(plan.tlsDir, side), 'agent'),
    remote: (script, label, timeoutMs, input) => runRemote(target, script, { label, env, onCommand: show, timeoutMs, input, signal: opts.signal }),
  };
  const facts = await probeHost(i);
  const change: Change = {
    layout: i.layout,
    facts,
    touched: false,
    rollback: {
      written: [],
      wasActive: facts.active === 'active',
      wasEnabled: facts.enabled,
      createdDirs: [...(facts.dirs.dir ? [] : [i.layout.dir]), ...(facts.dirs.tls ? [] : [i.layout.tlsDir]), ...(facts.dirs.state ? [] : [i.layout.stateDir])],
      addedPackages: [],
      markerBefore: facts.packages.join('\n'),
    },
  };
  try {
    const node = await ensureNode(i, change);
    const { written, started } = await applyFiles(i, change, node);
    const agent = await awaitAgent(i, change);
    for (const line of describeAgent(agent, plan.mailboxesDir)) out.item(line);
    out.event({ event: 'installed', ...statusEvent(agent), written, started, installed_packages: change.rollback.addedPackages });
    return { side, written, started, installedPackages: change.rollback.addedPackages, agent };
  } catch (err) {
    await rollBack(target, change, out, env);
    throw err;
  }
}
