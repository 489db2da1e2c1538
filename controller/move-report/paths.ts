/** Where the report of a move lives: beside the run journal, in the plan's state dir. */
import * as path from 'node:path';

export const REPORT_FILE = 'report.html';

/** `<stateDir>/report.html`. */
export function reportPath(stateDir: string): string {
  return path.join(stateDir, REPORT_FILE);
}
