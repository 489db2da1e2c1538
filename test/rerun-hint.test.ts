/**
 * A hint carries the command that continues as a parameter, RERUN (issue 11): it crosses the
 * wire unfilled and is filled once, with "the same command again" by the CLIs and with the
 * run's own command line by a run's step error.
 */
import type * as grpc from '@grpc/grpc-js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { interruptedError } from '../controller/interrupt';
import { stepError } from '../controller/run/context';
import { CmError, fromServiceError, RERUN, SAME_COMMAND_AGAIN, withRerun } from '../proto/errors';

const RUN = 'cmmigrate run --plan plan.toml';
const step = { id: '1', title: 'initial copy' } as const;

const ROOT = path.join(__dirname, '..');

describe('the rerun command in hints', () => {
  it('crosses the wire unfilled, and a plain command fills in the words it always said', () => {
    const e = new CmError('transfer.disk_full', 'no space', { hint: `free space, then run ${RERUN}: it continues where it stopped`, details: { path: '/x' } });
    const back = fromServiceError(e.toServiceError() as grpc.ServiceError);
    expect(back.hint).toBe(`free space, then run ${RERUN}: it continues where it stopped`);
    const filled = withRerun(back, SAME_COMMAND_AGAIN);
    expect(filled.hint).toBe('free space, then run the same command again: it continues where it stopped');
    expect([filled.code, filled.message, filled.exitCode]).toEqual([back.code, back.message, back.exitCode]);
    const plain = new CmError('transfer.disk_full', 'no space', { hint: 'look around' });
    expect(withRerun(plain, SAME_COMMAND_AGAIN)).toBe(plain);
  });

  it("a run's step error fills in the run's command", () => {
    const filled = stepError(new CmError('transfer.disk_full', 'no space', { hint: `free space, then run ${RERUN}` }), step, 'new.example', RUN);
    expect(filled.hint).toBe(`free space, then run ${RUN}`);
    expect(stepError(new CmError('transfer.disk_full', 'no space'), step, undefined, RUN).hint).toBe(`fix what is reported, then run ${RUN}`);
  });

  it('no hint in the product writes the rerun command in words (a run could not fill it in)', () => {
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) {
          if (e.name !== 'generated' && e.name !== 'build') walk(p);
        } else if (e.name.endsWith('.ts')) {
          fs.readFileSync(p, 'utf8').split('\n').forEach((line, i) => {
            if (!/^\s*(\*|\/\/)/.test(line) && /then run the same command again/.test(line)) offenders.push(`${path.relative(ROOT, p)}:${i + 1}`);
          });
        }
      }
    };
    for (const d of ['agent', 'controller', 'proto']) walk(path.join(ROOT, d));
    expect(offenders).toEqual([]);
  });

  it('an interruption says how to continue, in a run and outside one', () => {
    expect(withRerun(interruptedError('the command'), SAME_COMMAND_AGAIN).hint).toBe('run the same command again to continue');
    expect(stepError(interruptedError('the call'), step, undefined, RUN).hint).toBe(`run ${RUN} to continue`);
    expect(interruptedError('the run', RUN).hint).toBe(`run ${RUN} again to continue`);
  });
});
