/**
 * Whether a chatmail/relay checkout's cmdeploy honours CMDEPLOY_STAGES (relay 1.8.0 and
 * later), decided from its sources, and the release its CHANGELOG.md names.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CmError, RERUN } from '../../proto';
import { readChangelogRelease } from './changelog';

/** The first relay release whose cmdeploy honours CMDEPLOY_STAGES. */
export const STAGES_SINCE = '1.8.0';

export interface StageSupport {
  supported: boolean;
  /** Where the checkout's cmdeploy reads CMDEPLOY_STAGES (path relative to the checkout). */
  evidence?: { file: string; line: number; text: string };
  /** The newest release CHANGELOG.md names, when it can be read. */
  version?: string;
  /** CHANGELOG.md lists changes above that release (a checkout between releases). */
  unreleasedChanges?: boolean;
  /** Why stages are not supported, in words. */
  reason?: string;
}

/** The cmdeploy package inside a checkout. */
const CMDEPLOY_SRC = path.join('cmdeploy', 'src', 'cmdeploy');

/**
 * The relay reads the variable in its deploy code, as a quoted literal:
 * cmdeploy/src/cmdeploy/basedeploy.py, `Deployment.perform_stages`:
 *     stages = os.getenv("CMDEPLOY_STAGES", default_stages).split(",")
 * and, in the first releases with stages, cmdeploy/src/cmdeploy/deployer.py, `Deployer.__init__`:
 *     self.stages = os.getenv("CMDEPLOY_STAGES", default_stages).split(",")
 * A checkout whose cmdeploy sources hold no such literal ignores the variable.
 */
const STAGES_READ_RE = /(?:getenv|environ\.get|environ)\s*[([]\s*(["'])CMDEPLOY_STAGES\1/;

/** Python files of the cmdeploy package, sorted, without its tests. */
async function pythonSources(root: string, rel = ''): Promise<string[]> {
  const entries = await fsp.readdir(path.join(root, rel), { withFileTypes: true });
  const out: string[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const p = path.join(rel, e.name);
    if (e.isDirectory() && e.name !== 'tests' && e.name !== '__pycache__') out.push(...(await pythonSources(root, p)));
    else if (e.isFile() && e.name.endsWith('.py')) out.push(p);
  }
  return out;
}

/** Compares dotted version numbers: negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * The newest release in the checkout's CHANGELOG.md, in both heading styles upstream has
 * used (`## [1.12.0] - 2026-07-31`, `## 1.10.0 2026-04-30`): changelog.ts.
 */
export async function readCheckoutVersion(relayDir: string): Promise<{ version: string; unreleasedChanges: boolean } | undefined> {
  const r = await readChangelogRelease(relayDir);
  return r && { version: r.version, unreleasedChanges: r.unreleasedChanges };
}

/**
 * Whether the checkout's cmdeploy honours CMDEPLOY_STAGES. Decided by its source (see
 * STAGES_READ_RE); the release from CHANGELOG.md is reported beside it, for messages.
 * Rejects with `precondition.not_relay_checkout` when `relayDir` has no cmdeploy sources.
 */
export async function detectStageSupport(relayDir: string): Promise<StageSupport> {
  const dir = path.resolve(relayDir);
  const src = path.join(dir, CMDEPLOY_SRC);
  let files: string[];
  try {
    files = await pythonSources(src);
  } catch (err) {
    throw new CmError('precondition.not_relay_checkout', `${dir} is not a chatmail/relay checkout: it has no ${CMDEPLOY_SRC}/`, {
      hint: 'give the directory of your chatmail/relay checkout as --relay-dir',
      cause: err,
    });
  }
  const release = await readCheckoutVersion(dir);
  const base = { version: release?.version, unreleasedChanges: release?.unreleasedChanges };
  for (const f of files) {
    const text = await fsp.readFile(path.join(src, f), 'utf8');
    const lines = text.split('\n');
    const i = lines.findIndex((l) => STAGES_READ_RE.test(l) && !l.trimStart().startsWith('#'));
    if (i >= 0) {
      return { supported: true, evidence: { file: path.join(CMDEPLOY_SRC, f), line: i + 1, text: lines[i].trim() }, ...base };
    }
  }
  const at = release ? `the checkout is at relay ${release.version}${release.unreleasedChanges ? ' with later changes' : ''}, and ` : '';
  return {
    supported: false,
    ...base,
    reason: `${at}its cmdeploy (${CMDEPLOY_SRC}/) never reads CMDEPLOY_STAGES: it would run a full deploy and switch the new host on before the final sync`,
  };
}

/** Like detectStageSupport, but a checkout without stages is a `precondition.no_cmdeploy_stages` error. */
export async function requireStageSupport(relayDir: string): Promise<StageSupport> {
  const s = await detectStageSupport(relayDir);
  if (!s.supported) {
    throw new CmError('precondition.no_cmdeploy_stages', `the relay checkout ${path.resolve(relayDir)} does not support CMDEPLOY_STAGES: ${s.reason}`, {
      hint: `update the checkout to relay ${STAGES_SINCE} or later (git pull, then scripts/initenv.sh), deploy the old host with it once, then run ${RERUN}`,
      details: { version: s.version ?? null },
    });
  }
  return s;
}
