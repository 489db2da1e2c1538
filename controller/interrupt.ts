/**
 * Ctrl-C as an error: what an operation throws when the run's AbortSignal stopped it, so
 * that the journal records the step as interrupted and the exit status is 130.
 */
import { CmError, ExitCode, RERUN } from '../proto/errors';

/** `what` (a step, a pass, a command) was stopped by Ctrl-C; `rerun` (default: RERUN, filled in later) continues it. */
export function interruptedError(what: string, rerun?: string, cause?: unknown): CmError {
  return new CmError('step.interrupted', `${what} was interrupted`, {
    hint: rerun === undefined ? `run ${RERUN} to continue` : `run ${rerun} again to continue`,
    exitCode: ExitCode.interrupted,
    cause,
  });
}

/** Whether `err` is already an interruption (exit status 130). */
export function isInterruption(err: unknown): boolean {
  return err instanceof CmError && err.exitCode === ExitCode.interrupted;
}

/** A promise that rejects once `signal` aborts (never, without one), for races with waits that cannot be cancelled. */
export function whenAborted(signal: AbortSignal | undefined, what: string): { promise: Promise<never>; dispose(): void } {
  let onAbort = (): void => undefined;
  const promise = new Promise<never>((_, reject) => {
    onAbort = () => reject(interruptedError(what));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
  promise.catch(() => undefined);
  return { promise, dispose: () => signal?.removeEventListener('abort', onAbort) };
}
