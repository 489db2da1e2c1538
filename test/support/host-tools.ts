/**
 * Stand-ins for the relay host's `systemctl`, `postfix` and `postsuper`
 * (test/support/host-tools/), for the agent's host operations in tests and the demo. Put
 * HOST_TOOLS_DIR first on an agent's PATH and give it CMMIGRATE_HOST_STATE; these helpers
 * read and change that state directory. `fail/<name>` is shared by units and commands:
 * `postfix` there fails both `systemctl ... postfix` and `postfix set-permissions`.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { REPO } from './harness';

/** The stand-ins' directory (from the sources: the build does not copy scripts). */
export const HOST_TOOLS_DIR = path.join(REPO, 'test', 'support', 'host-tools');

/** The environment an agent needs to use the stand-ins with state in `stateDir`. */
export function hostToolsEnv(stateDir: string): NodeJS.ProcessEnv {
  return { PATH: `${HOST_TOOLS_DIR}${path.delimiter}${process.env.PATH ?? '/usr/bin:/bin'}`, CMMIGRATE_HOST_STATE: stateDir };
}

/** Set a unit's state as the stand-in systemctl reports it. */
export async function setUnitState(stateDir: string, unit: string, state: string): Promise<void> {
  await fs.mkdir(path.join(stateDir, 'units'), { recursive: true });
  await fs.writeFile(path.join(stateDir, 'units', unit), state + '\n');
}

/** A unit's state in the stand-in's files (missing: inactive). */
export async function unitState(stateDir: string, unit: string): Promise<string> {
  try {
    return (await fs.readFile(path.join(stateDir, 'units', unit), 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'inactive';
    throw err;
  }
}

/** Every call of the stand-ins so far, one argv (joined by spaces) per entry. */
export async function readCalls(stateDir: string): Promise<string[]> {
  try {
    return (await fs.readFile(path.join(stateDir, 'calls.log'), 'utf8')).split('\n').filter((l) => l !== '');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Make a unit's stop/start/restart, or the `postfix` or `postsuper` command, fail with exit 1. */
export async function injectFailure(stateDir: string, name: string): Promise<void> {
  await fs.mkdir(path.join(stateDir, 'fail'), { recursive: true });
  await fs.writeFile(path.join(stateDir, 'fail', name), '');
}

export async function clearFailure(stateDir: string, name: string): Promise<void> {
  await fs.rm(path.join(stateDir, 'fail', name), { force: true });
}
