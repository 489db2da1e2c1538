/**
 * The bounds the README promises, in one place for the tests and scripts that hold cmmigrate
 * to them (and check that the README still states them).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO } from './harness';

/** Each agent's peak RSS (VmHWM), at any tree size: the README's "200 MB goal". */
export const AGENT_PEAK_RSS_MB = 200;
export const AGENT_PEAK_RSS_BYTES = AGENT_PEAK_RSS_MB * 1_000_000;

/** Whether README.md states the agents' memory bound as this number. */
export function readmeStatesRssBound(): boolean {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
  return readme.includes(`within the ${AGENT_PEAK_RSS_MB} MB goal`);
}
