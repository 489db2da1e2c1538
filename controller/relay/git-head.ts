/**
 * Which commit a relay checkout is at, read from its .git without running git, and how
 * that compares with a host's /etc/chatmail-version.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/** The commit the checkout's HEAD points at, read from its .git without running git; undefined when unknown. */
export async function checkoutCommit(relayDir: string): Promise<string | undefined> {
  let gitDir = path.join(path.resolve(relayDir), '.git');
  try {
    const st = await fsp.stat(gitDir);
    if (st.isFile()) {
      // A worktree or submodule: ".git" is a file that names the real directory.
      const m = /^gitdir:\s*(.+)$/m.exec(await fsp.readFile(gitDir, 'utf8'));
      if (!m) return undefined;
      gitDir = path.resolve(path.resolve(relayDir), m[1].trim());
    }
    const head = (await fsp.readFile(path.join(gitDir, 'HEAD'), 'utf8')).trim();
    if (/^[0-9a-f]{40,64}$/.test(head)) return head;
    const ref = /^ref:\s*(\S+)$/.exec(head)?.[1];
    if (!ref) return undefined;
    const loose = await fsp.readFile(path.join(gitDir, ref), 'utf8').catch(() => undefined);
    if (loose) return loose.trim();
    // A worktree keeps its refs in the common directory.
    const common = (await fsp.readFile(path.join(gitDir, 'commondir'), 'utf8').catch(() => undefined))?.trim();
    const refDir = common ? path.resolve(gitDir, common) : gitDir;
    const looseCommon = await fsp.readFile(path.join(refDir, ref), 'utf8').catch(() => undefined);
    if (looseCommon) return looseCommon.trim();
    const packed = await fsp.readFile(path.join(refDir, 'packed-refs'), 'utf8').catch(() => '');
    return packed.split('\n').map((l) => l.split(' ')).find((p) => p[1] === ref)?.[0];
  } catch {
    return undefined;
  }
}

/**
 * Compares the old host's /etc/chatmail-version (the commit it was deployed from, then the
 * `git diff` of that checkout) with the checkout. Returns a warning, or undefined when they match.
 */
export function chatmailVersionWarning(hostFile: string | undefined, checkout: string | undefined, host: string): string | undefined {
  if (hostFile === undefined) return undefined;
  const deployed = /\b[0-9a-f]{40}\b/.exec(hostFile)?.[0];
  if (!deployed) return `${host}: /etc/chatmail-version names no commit; cannot tell whether your checkout is the one the relay was deployed from`;
  if (!checkout) return `${host} was deployed from commit ${deployed}; cannot read which commit your checkout is at`;
  if (deployed !== checkout) {
    return `${host} was deployed from commit ${deployed}, but your checkout is at ${checkout}: step 2 deploys the checkout's version to the new host (check out ${deployed.slice(0, 12)} if you want the same one)`;
  }
  const lines = hostFile.split('\n').filter((l) => l.trim() !== '');
  if (lines.length > 1) return `${host} was deployed from commit ${deployed} with local changes (its /etc/chatmail-version carries a diff): make sure your checkout has them too`;
  return undefined;
}
