/**
 * Vitest settings of `npm test` (its timeouts stay on the command line in package.json).
 *
 * Two test files at a time. Vitest's default is one fewer worker than there are cores, so
 * one file at a time on the 2-core machine the suite must stay fast on; but a test file
 * mostly waits on the processes it started (the controller CLI starting, TLS handshakes,
 * stall timeouts, sshd), one core at a time, and leaves the other idle. Every file makes its
 * own temp directories and takes free ports on 127.0.0.x, so two never share a resource.
 * Files run longest first (vitest's default order, from its cache of the last run's
 * durations), so that the longest does not start last.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    maxWorkers: 2,
  },
});
