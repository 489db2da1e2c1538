/** Assertions about the errors a call ends with. */
import { expect } from 'vitest';
import { CmError } from '../../proto';

/** The CmError that `p` rejects with (the test fails if it resolves or rejects otherwise). */
export async function failure(p: Promise<unknown>): Promise<CmError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CmError);
  return err as CmError;
}
