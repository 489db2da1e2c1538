/**
 * The relay release a checkout is at, from its CHANGELOG.md, in both heading styles upstream
 * has used: `## [1.12.0] - 2026-07-31` (since 1.11.0), `## 1.10.0 2026-04-30`, and
 * `## 1.3.0 - 2024-06-06` (chatmail/relay CHANGELOG.md). Pure.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

export interface ChangelogRelease {
  /** The newest release named by a heading, e.g. `1.12.0`. */
  version: string;
  /** A heading comes before it (`## Unreleased`, `## untagged`): the checkout is past that release. */
  unreleasedChanges: boolean;
  /** The heading's date, when it has one (YYYY-MM-DD). */
  date?: string;
}

const RELEASE_RE = /^##\s+(?:\[\s*v?(\d+\.\d+(?:\.\d+)?)\s*\]|v?(\d+\.\d+(?:\.\d+)?))(?=[\s\]-]|$)(?:\s*-?\s*(\d{4}-\d{2}-\d{2}))?/;

/** The release of a changelog's text; undefined when no `## ` heading names one. */
export function releaseFromChangelog(text: string): ChangelogRelease | undefined {
  let before = 0;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (!/^##\s/.test(line)) continue;
    const m = RELEASE_RE.exec(line);
    if (m) {
      const r: ChangelogRelease = { version: m[1] ?? m[2], unreleasedChanges: before > 0 };
      if (m[3]) r.date = m[3];
      return r;
    }
    before++;
  }
  return undefined;
}

/** Reads `<checkout>/CHANGELOG.md`; undefined when there is none or it names no release. */
export async function readChangelogRelease(checkout: string): Promise<ChangelogRelease | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(checkout, 'CHANGELOG.md'), 'utf8');
  } catch {
    return undefined;
  }
  return releaseFromChangelog(text);
}
