/**
 * The command lines as an operator meets them: help, usage errors, clear errors with the
 * next step, exit codes, and an agent that stops cleanly on SIGTERM and SIGINT.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_CLI, cmmigrate, CONTROLLER_CLI, freePort, runNode, startAgentProcess } from './support/harness';

describe('cmmigrate CLI', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-cli-'));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('--help lists the commands and the exit codes', async () => {
    const r = await cmmigrate(['--help']);
    expect(r.code).toBe(0);
    for (const word of ['init', 'sync', 'verify', 'Exit status', '130']) expect(r.stdout).toContain(word);
    const s = await cmmigrate(['sync', '--help']);
    expect(s.code).toBe(0);
    expect(s.stdout).toContain('--phase');
    expect(s.stdout).toContain('--dry-run');
  });

  it('a reader that goes away early (`--help | head -1`) ends the output quietly, exit 0', async () => {
    // The pipe's reading end is closed before the help is written: every write gets EPIPE.
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, [CONTROLLER_CLI, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    expect(stderr).not.toMatch(/EPIPE|Error/);
    expect(code).toBe(0);
  });

  it('a missing option is a usage error (exit 2) that names it', async () => {
    const r = await cmmigrate(['sync', '--plan', 'x.toml']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--phase');
    const bad = await cmmigrate(['sync', '--plan', 'x.toml', '--phase', 'middle']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/initial|final/);
  });

  it('a missing plan names the file and the command that makes one', async () => {
    const plan = path.join(dir, 'nope.toml');
    const r = await cmmigrate(['sync', '--plan', plan, '--phase', 'initial']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(plan);
    expect(r.stderr).toContain('[plan.not_found]');
    expect(r.stderr).toContain('cmmigrate init');
  });

  it('an agent that is not running: exit 1, names the address and what to check', async () => {
    const port = await freePort('127.0.0.2');
    const plan = path.join(dir, 'plan.toml');
    const init = await cmmigrate(['init', '--plan', plan, '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3', '--old-agent', `127.0.0.2:${port}`, '--new-agent', `127.0.0.3:${port}`]);
    expect(init.code).toBe(0);
    const r = await cmmigrate(['verify', '--plan', plan], { timeoutMs: 60_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`127.0.0.`);
    expect(r.stderr).toMatch(/\[connect\.\w+\]/);
    expect(r.stderr).toContain('next:');
    expect(r.stderr).not.toMatch(/\d+ UNAVAILABLE/);
  });

  it('--version and a usage error load no gRPC and no operation; a command that runs loads them', async () => {
    // What the process loaded, written as it exits: Node's built-ins (grpc-js needs http2)
    // and the files of the controller's bundle.
    const preload = path.join(dir, 'loaded.js');
    await fs.writeFile(
      preload,
      "process.on('exit', () => process.stderr.write('LOADED ' + JSON.stringify({ builtins: process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13)), files: Object.keys(require.cache).map((f) => require('path').basename(f)) }) + '\\n'));\n",
    );
    const loaded = async (args: string[]): Promise<{ builtins: string[]; files: string[] }> => {
      const r = await cmmigrate(args, { env: { NODE_OPTIONS: `--require ${preload}` } });
      const line = r.stderr.split('\n').find((l) => l.startsWith('LOADED '));
      expect(line, r.stderr).toBeDefined();
      return JSON.parse(line!.slice(7)) as { builtins: string[]; files: string[] };
    };
    for (const args of [['--version'], ['sync', '--plan', 'x.toml']]) {
      const l = await loaded(args);
      expect(l.files).toContain('cmmigrate.js');
      expect(l.builtins).not.toContain('http2');
      for (const heavy of ['cmmigrate-ops.js', 'cmmigrate-grpc.js']) expect(l.files).not.toContain(heavy);
    }
    const ran = await loaded(['sync', '--plan', path.join(dir, 'nope.toml'), '--phase', 'initial']);
    expect(ran.builtins).toContain('http2');
    expect(ran.files).toEqual(expect.arrayContaining(['cmmigrate-ops.js', 'cmmigrate-grpc.js']));
  });
});

describe('cmmigrate-agent CLI', () => {
  let dir: string;
  let tls: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-agent-cli-'));
    const r = await cmmigrate(['init', '--plan', path.join(dir, 'plan.toml'), '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3']);
    expect(r.code).toBe(0);
    tls = path.join(dir, '.cmmigrate', 'tls');
    await fs.mkdir(path.join(dir, 'root', 'etc'), { recursive: true });
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('serve without --tls-dir is a usage error', async () => {
    const r = await runNode(AGENT_CLI, ['serve', '--listen', '127.0.0.2:1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--tls-dir');
  });

  it('a TLS directory without the agent material names the missing file', async () => {
    const r = await runNode(AGENT_CLI, ['serve', '--listen', '127.0.0.2:1', '--root', dir, '--tls-dir', path.join(tls, 'ca')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('agent.crt');
  });

  it("the controller's material is refused as an agent's", async () => {
    const ctl = path.join(dir, 'ctl-as-agent');
    await fs.mkdir(ctl);
    await fs.copyFile(path.join(tls, 'controller', 'ca.crt'), path.join(ctl, 'ca.crt'));
    await fs.copyFile(path.join(tls, 'controller', 'controller.crt'), path.join(ctl, 'agent.crt'));
    await fs.copyFile(path.join(tls, 'controller', 'controller.key'), path.join(ctl, 'agent.key'));
    const r = await runNode(AGENT_CLI, ['serve', '--listen', '127.0.0.2:1', '--root', dir, '--tls-dir', ctl]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('not an agent certificate');
  });

  it('a port already taken is a clear error', async () => {
    const port = await freePort('127.0.0.2');
    const a = await startAgentProcess({ listen: `127.0.0.2:${port}`, root: path.join(dir, 'root'), tlsDir: path.join(tls, 'old') });
    try {
      const r = await runNode(AGENT_CLI, ['serve', '--listen', `127.0.0.2:${port}`, '--root', path.join(dir, 'root'), '--tls-dir', path.join(tls, 'old')]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`127.0.0.2:${port}`);
      expect(r.stderr).toMatch(/another process|in use/);
    } finally {
      await a.stop();
    }
  });

  it('stops cleanly on SIGTERM and on SIGINT (exit 0)', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const port = await freePort('127.0.0.2');
      const a = await startAgentProcess({ listen: `127.0.0.2:${port}`, root: path.join(dir, 'root'), tlsDir: path.join(tls, 'old') });
      expect(await a.stop(signal)).toBe(0);
      expect(a.log()).toContain('stopped');
    }
  });
});

describe('how the agent is launched', () => {
  it('its #! line, the bundle and the systemd unit pass the same Node.js flags', async () => {
    const { AGENT_NODE_FLAGS } = await import('../proto');
    const { remoteLayout, renderUnit } = await import('../controller/remote-layout');
    const shebang = (await fs.readFile(AGENT_CLI, 'utf8')).split('\n')[0];
    expect(shebang).toBe(`#!/usr/bin/env -S node ${AGENT_NODE_FLAGS.join(' ')}`);
    const tscOutput = (await fs.readFile(path.join(path.dirname(AGENT_CLI), 'agent', 'cli.js'), 'utf8')).split('\n')[0];
    expect(tscOutput).toBe(shebang);
    const unit = renderUnit(remoteLayout(''), { node: '/usr/bin/node', listen: '127.0.0.3:7826', mailboxesDir: '/home/vmail/mail', side: 'new' });
    expect(unit).toContain(`ExecStart=/usr/bin/node ${AGENT_NODE_FLAGS.join(' ')} /opt/cmmigrate/cmmigrate-agent.js serve`);
  });

  it('the installed bin runs through its #! line', async () => {
    const { execFile } = await import('node:child_process');
    const out = await new Promise<string>((resolve, reject) =>
      execFile(AGENT_CLI, ['--version'], (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    expect(out.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
});
