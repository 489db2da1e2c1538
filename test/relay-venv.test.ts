import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CmError } from '../proto/errors';
import { pyinfraIsNewEnough, readVenv, requireRunnableCheckout } from '../controller/relay/venv';

let tmp: string;
beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-venv-'));
});
afterEach(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

/** A venv as `python3 -m venv venv && pip install -e cmdeploy` leaves it, with pyinfra `version`. */
async function makeVenv(dir: string, o: { cmdeploy?: boolean; pyinfra?: string; python?: string } = {}): Promise<void> {
  await fsp.mkdir(path.join(dir, 'venv/bin'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'venv/bin/activate'), '# venv\n');
  if (o.cmdeploy !== false) await fsp.writeFile(path.join(dir, 'venv/bin/cmdeploy'), '#!/usr/bin/env python3\n', { mode: 0o755 });
  const site = path.join(dir, 'venv/lib', o.python ?? 'python3.11', 'site-packages');
  await fsp.mkdir(site, { recursive: true });
  if (o.pyinfra) {
    const dist = path.join(site, `pyinfra-${o.pyinfra}.dist-info`);
    await fsp.mkdir(dist);
    await fsp.writeFile(path.join(dist, 'METADATA'), `Metadata-Version: 2.1\nName: pyinfra\nVersion: ${o.pyinfra}\nSummary: x\n`);
  }
}

async function failure(p: Promise<unknown>): Promise<CmError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CmError);
  return err as CmError;
}

describe('venv', () => {
  it('accepts a venv with cmdeploy and pyinfra 3', async () => {
    await makeVenv(tmp, { pyinfra: '3.2.0' });
    expect(await requireRunnableCheckout(tmp)).toEqual({ activate: true, cmdeploy: true, pyinfraVersion: '3.2.0' });
  });

  it('refuses a checkout where initenv.sh never ran, naming the fix', async () => {
    const err = await failure(requireRunnableCheckout(tmp));
    expect(err.code).toBe('precondition.relay_venv');
    expect(err.message).toContain('venv/bin/activate and venv/bin/cmdeploy missing');
    expect(err.hint).toBe(`run: cd ${tmp} && scripts/initenv.sh`);
  });

  it('refuses a venv without cmdeploy, and one with pyinfra 2 or none', async () => {
    await makeVenv(tmp, { cmdeploy: false, pyinfra: '3.0' });
    expect((await failure(requireRunnableCheckout(tmp))).message).toContain('venv/bin/cmdeploy missing');
    const old = path.join(tmp, 'old');
    await makeVenv(old, { pyinfra: '2.9.2', python: 'python3.9' });
    expect((await failure(requireRunnableCheckout(old))).message).toContain('has pyinfra 2.9.2 in its venv; cmdeploy run needs pyinfra 3 or newer');
    const none = path.join(tmp, 'none');
    await makeVenv(none);
    expect((await failure(requireRunnableCheckout(none))).message).toContain('has no pyinfra');
    expect(await readVenv(none)).toEqual({ activate: true, cmdeploy: true });
  });

  it('compares versions by their release major', () => {
    for (const v of ['3', '3.0.0', '3.1rc1', '10.0', '1!0.1']) expect(pyinfraIsNewEnough(v)).toBe(v !== '1!0.1');
    for (const v of ['2.9.2', '0.1', 'x']) expect(pyinfraIsNewEnough(v)).toBe(false);
  });
});
