/**
 * The Debian release of a host against what upstream documents: Debian 12 only
 * (chatmail/relay `doc/source/getting_started.rst` "A Debian 12 deployment server",
 * `doc/source/migrate.rst` "All remote machines run Debian 12"). cmdeploy itself does not
 * check. Pure: it takes the text of /etc/os-release.
 */

/** The Debian major release upstream documents. */
export const UPSTREAM_DEBIAN = '12';

/** ID and VERSION_ID of an os-release text (shell-style `KEY=value`, quotes removed). */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]] = m[2].replace(/^(["'])(.*)\1$/, '$2');
  }
  return out;
}

/** A warning naming the reason, or undefined on Debian 12. */
export function debianWarning(osRelease: string, host: string): string | undefined {
  const os = parseOsRelease(osRelease);
  const name = os.PRETTY_NAME ?? [os.ID, os.VERSION_ID].filter(Boolean).join(' ');
  if (os.ID === 'debian' && os.VERSION_ID === UPSTREAM_DEBIAN) return undefined;
  const what = name || 'an unknown system';
  return `${host} runs ${what}; chatmail/relay documents Debian ${UPSTREAM_DEBIAN} only (doc/source/getting_started.rst): cmdeploy may fail or deploy packages that behave differently there`;
}
