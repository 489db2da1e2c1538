/**
 * Getting cmmigrate onto an operator's PATH (issue 24): the package as `npm pack` makes it
 * installs into an empty prefix, and both command lines run from there with nothing of the
 * clone on their path. `npm test` has built dist/ already (pretest), so the pack skips the
 * prepare script; the install takes the dependencies from npm's cache where it can.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO } from './support/harness';

const run = promisify(execFile);
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

describe('the packed package', () => {
  let dir: string;
  let prefix: string;
  let bin: string;
  const version = (require(path.join(REPO, 'package.json')) as { version: string }).version;
  // Only Node itself on the path: no node_modules/.bin, no clone.
  const env = (): NodeJS.ProcessEnv => ({ PATH: `${bin}:${path.dirname(process.execPath)}:/usr/bin:/bin`, HOME: dir });

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-pack-'));
    prefix = path.join(dir, 'prefix');
    bin = path.join(prefix, 'bin');
    const packed = await run(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: REPO, maxBuffer: 64 << 20 });
    const [{ filename }] = JSON.parse(packed.stdout) as { filename: string }[];
    await run(npm, ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', path.join(dir, filename)], {
      cwd: dir,
      env: { ...process.env, npm_config_cache: process.env.npm_config_cache ?? path.join(os.homedir(), '.npm') },
      maxBuffer: 64 << 20,
    });
  }, 300_000);

  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('installs both command lines, which run from the prefix alone', async () => {
    for (const cli of ['cmmigrate', 'cmmigrate-agent']) {
      const real = await fs.realpath(path.join(bin, cli));
      expect(real.startsWith(prefix)).toBe(true);
      expect(real.startsWith(REPO + path.sep)).toBe(false);
    }
    const v = await run('cmmigrate', ['--version'], { cwd: dir, env: env() });
    expect(v.stdout.trim()).toBe(version);
    const help = await run('cmmigrate', ['--help'], { cwd: dir, env: env() });
    for (const word of ['init', 'install-agent', 'run', 'sync', 'verify', 'Exit status']) expect(help.stdout).toContain(word);
    const agent = await run('cmmigrate-agent', ['--version'], { cwd: dir, env: env() });
    expect(agent.stdout.trim()).toBe(version);
  });

  it('ships the built command lines and the wire contract, not the sources or the tests', async () => {
    const pkg = path.join(prefix, 'lib', 'node_modules', 'cmmigrate');
    await expect(fs.stat(path.join(pkg, 'dist', 'cmmigrate-agent.js'))).resolves.toBeTruthy();
    await expect(fs.stat(path.join(pkg, 'proto'))).resolves.toBeTruthy();
    for (const absent of ['test', 'agent', 'controller', 'dist-test']) {
      await expect(fs.stat(path.join(pkg, absent))).rejects.toMatchObject({ code: 'ENOENT' });
    }
  });
});
