import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readChangelogRelease, releaseFromChangelog } from '../controller/relay/changelog';

describe('releaseFromChangelog', () => {
  it('reads both heading styles upstream has used', () => {
    expect(releaseFromChangelog('# Changelog for chatmail deployment\n\n## [1.12.0] - 2026-07-31\n\n### Features\n')).toEqual({ version: '1.12.0', unreleasedChanges: false, date: '2026-07-31' });
    expect(releaseFromChangelog('# Changelog\n\n## 1.10.0 2026-04-30\n')).toEqual({ version: '1.10.0', unreleasedChanges: false, date: '2026-04-30' });
    expect(releaseFromChangelog('## 1.3.0 - 2024-06-06\r\n')).toEqual({ version: '1.3.0', unreleasedChanges: false, date: '2024-06-06' });
    expect(releaseFromChangelog('## [1.11.0]\n')).toEqual({ version: '1.11.0', unreleasedChanges: false });
  });

  it('marks changes above the newest release, and skips ### headings', () => {
    expect(releaseFromChangelog('## Unreleased\n### 1.99.0 note\n## [1.12.0] - 2026-07-31\n')).toEqual({ version: '1.12.0', unreleasedChanges: true, date: '2026-07-31' });
    expect(releaseFromChangelog('## untagged\n')).toBeUndefined();
    expect(releaseFromChangelog('## 1.2.3abc\n')).toBeUndefined();
  });

  it('reads the release of the real CHANGELOG at 1.12.0, when the mirror is here', async () => {
    let text: string;
    try {
      text = execFileSync('git', ['--git-dir', '/work/.mirror/chatmail+relay/repo', 'show', '1.12.0:CHANGELOG.md'], { encoding: 'utf8' });
    } catch {
      return;
    }
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-changelog-'));
    try {
      await fsp.writeFile(path.join(dir, 'CHANGELOG.md'), text);
      expect(await readChangelogRelease(dir)).toEqual({ version: '1.12.0', unreleasedChanges: false, date: '2026-07-31' });
      // The older style further down, once the newer headings are gone.
      await fsp.writeFile(path.join(dir, 'CHANGELOG.md'), text.slice(text.indexOf('## 1.10.0')));
      expect((await readChangelogRelease(dir))?.version).toBe('1.10.0');
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
    expect(await readChangelogRelease(path.join(os.tmpdir(), 'cmm-no-such-dir'))).toBeUndefined();
  });
});
