/**
 * Whether a chatmail/relay checkout can run `scripts/cmdeploy run`: `scripts/cmdeploy` sources
 * `venv/bin/activate` and runs `cmdeploy` (made by `scripts/initenv.sh`), and
 * `cmdeploy/src/cmdeploy/cmdeploy.py` `run_cmd` refuses a pyinfra older than 3 ("Please
 * re-run scripts/initenv.sh to update pyinfra to version 3."). Read from the files, without
 * running Python.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CmError } from '../../proto/errors';

export interface VenvState {
  /** `venv/bin/activate` exists (scripts/cmdeploy sources it). */
  activate: boolean;
  /** `venv/bin/cmdeploy` exists. */
  cmdeploy: boolean;
  /** pyinfra's version from its dist-info in the venv's site-packages, if installed. */
  pyinfraVersion?: string;
}

async function exists(file: string): Promise<boolean> {
  return fsp.stat(file).then(
    (s) => s.isFile(),
    () => false,
  );
}

/** pyinfra's version in `<venv>/lib/python3.*\/site-packages/pyinfra-<v>.dist-info/METADATA`. */
export async function pyinfraVersion(venv: string): Promise<string | undefined> {
  const lib = path.join(venv, 'lib');
  const pythons = (await fsp.readdir(lib).catch(() => [] as string[])).filter((n) => /^python3/.test(n)).sort();
  for (const py of pythons) {
    const site = path.join(lib, py, 'site-packages');
    const dists = (await fsp.readdir(site).catch(() => [] as string[])).filter((n) => /^pyinfra-[^-]+\.dist-info$/i.test(n)).sort();
    for (const d of dists) {
      const meta = await fsp.readFile(path.join(site, d, 'METADATA'), 'utf8').catch(() => undefined);
      const v = meta ? /^Version:\s*(\S+)/m.exec(meta)?.[1] : undefined;
      return v ?? /^pyinfra-([^-]+)\.dist-info$/i.exec(d)?.[1];
    }
  }
  return undefined;
}

/** What the checkout's venv holds. */
export async function readVenv(checkout: string): Promise<VenvState> {
  const venv = path.join(checkout, 'venv');
  const state: VenvState = {
    activate: await exists(path.join(venv, 'bin', 'activate')),
    cmdeploy: await exists(path.join(venv, 'bin', 'cmdeploy')),
  };
  const v = await pyinfraVersion(venv);
  if (v !== undefined) state.pyinfraVersion = v;
  return state;
}

/** True when a PEP 440 version's major release number is at least 3. */
export function pyinfraIsNewEnough(version: string): boolean {
  const m = /^(?:\d+!)?(\d+)/.exec(version.trim());
  return m !== null && Number(m[1]) >= 3;
}

/**
 * Rejects with `precondition.relay_venv` unless the checkout can run cmdeploy: venv made,
 * cmdeploy installed in it, pyinfra 3 or newer. The hint names the command that fixes it.
 */
export async function requireRunnableCheckout(checkout: string): Promise<VenvState> {
  const dir = path.resolve(checkout);
  const s = await readVenv(dir);
  const fix = `cd ${dir} && scripts/initenv.sh`;
  if (!s.activate || !s.cmdeploy) {
    const missing = [!s.activate && 'venv/bin/activate', !s.cmdeploy && 'venv/bin/cmdeploy'].filter(Boolean).join(' and ');
    throw new CmError('precondition.relay_venv', `the relay checkout ${dir} cannot run cmdeploy: ${missing} missing (scripts/initenv.sh has not been run)`, {
      hint: `run: ${fix}`,
      details: { checkout: dir },
    });
  }
  if (s.pyinfraVersion === undefined || !pyinfraIsNewEnough(s.pyinfraVersion)) {
    const have = s.pyinfraVersion === undefined ? 'no pyinfra' : `pyinfra ${s.pyinfraVersion}`;
    throw new CmError('precondition.relay_venv', `the relay checkout ${dir} has ${have} in its venv; cmdeploy run needs pyinfra 3 or newer`, {
      hint: `run: ${fix}`,
      details: { checkout: dir, pyinfra: s.pyinfraVersion ?? null },
    });
  }
  return s;
}
