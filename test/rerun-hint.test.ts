/**
 * A hint carries the command that continues as a parameter, RERUN (issue 11): it crosses the
 * wire unfilled and is filled once, with "the same command again" by the CLIs and with the
 * run's own command line by a run's step error.
 */
import type * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { interruptedError } from '../controller/interrupt';
import { stepError } from '../controller/run/context';
import { CmError, fromServiceError, RERUN, SAME_COMMAND_AGAIN, withRerun } from '../proto/errors';

const RUN = 'cmmigrate run --plan plan.toml';
const step = { id: '1', title: 'initial copy' } as const;

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

  it("a run's step error fills in the run's command, for new hints and for ones still written in words", () => {
    const filled = stepError(new CmError('transfer.disk_full', 'no space', { hint: `free space, then run ${RERUN}` }), step, 'new.example', RUN);
    expect(filled.hint).toBe(`free space, then run ${RUN}`);
    const words = stepError(new CmError('transfer.disk_full', 'no space', { hint: 'free space, then run the same command again' }), step, 'new.example', RUN);
    expect(words.hint).toBe(`free space, then run ${RUN}`);
    expect(stepError(new CmError('transfer.disk_full', 'no space'), step, undefined, RUN).hint).toBe(`fix what is reported, then run ${RUN}`);
  });

  it('an interruption says how to continue, in a run and outside one', () => {
    expect(withRerun(interruptedError('the command'), SAME_COMMAND_AGAIN).hint).toBe('run the same command again to continue');
    expect(stepError(interruptedError('the call'), step, undefined, RUN).hint).toBe(`run ${RUN} to continue`);
    expect(interruptedError('the run', RUN).hint).toBe(`run ${RUN} again to continue`);
  });
});
