/**
 * The allowlist of what an agent may read or write: named roots, each a host path under
 * the agent's --root. Requests name roots; paths never come from the wire.
 */

export const DEFAULT_MAILBOXES_DIR = '/home/vmail/mail';

export type RootName =
  | 'mailboxes'
  | 'dkimkeys'
  | 'acme'
  | 'spool'
  | 'nocreate'
  | 'ssl-cert'
  | 'ssl-key'
  | 'passdb';

export interface RootSpec {
  name: RootName;
  /** Host path; `null` for the mailboxes dir, which comes from the agent's configuration. */
  path: string | null;
  /** Carried only when present on the source (the small extras). */
  optional: boolean;
}

export const ROOTS: readonly RootSpec[] = [
  { name: 'mailboxes', path: null, optional: false },
  { name: 'dkimkeys', path: '/etc/dkimkeys', optional: false },
  { name: 'acme', path: '/var/lib/acme', optional: true },
  { name: 'spool', path: '/var/spool/postfix', optional: false },
  { name: 'nocreate', path: '/etc/chatmail-nocreate', optional: true },
  { name: 'ssl-cert', path: '/etc/ssl/certs/mailserver.pem', optional: true },
  { name: 'ssl-key', path: '/etc/ssl/private/mailserver.key', optional: true },
  { name: 'passdb', path: '/home/vmail/passdb.sqlite', optional: true },
];

export const ROOT_NAMES: readonly RootName[] = ROOTS.map((r) => r.name);

export type Phase = 'initial' | 'final';

/** The roots each phase carries: initial the mailboxes, final every root. */
export function rootsForPhase(phase: Phase): RootName[] {
  return phase === 'initial' ? ['mailboxes'] : [...ROOT_NAMES];
}

/** Owners forced on the target per root, as the manual procedure's chown lines. */
export const DEFAULT_OWNER_RULES: Partial<Record<RootName, { user: string; group: string }>> = {
  mailboxes: { user: 'vmail', group: 'vmail' },
  dkimkeys: { user: 'opendkim', group: 'opendkim' },
  acme: { user: 'root', group: 'root' },
};

export function isRootName(s: string): s is RootName {
  return (ROOT_NAMES as readonly string[]).includes(s);
}
