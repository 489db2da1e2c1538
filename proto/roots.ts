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
  /**
   * Paths inside the root (relative to it) that are runtime state of the host it is on:
   * neither carried nor verified nor deleted, on either side. `dir/*`: the directory is
   * carried, its contents are not.
   */
  runtime?: readonly string[];
}

/**
 * Postfix's runtime files in its spool, re-made by every postfix start on whichever host:
 * Debian's postfix init (`/usr/lib/postfix/configure-instance.sh`) copies /etc/localtime,
 * hosts, resolv.conf, services, nsswitch.conf, host.conf into `etc/` and the NSS libraries
 * into `lib/` of the chroot; master writes `pid/master.pid` and `pid/{inet,unix}.*` locks
 * (`pid/` itself comes with the package, root 0755, and is carried).
 * chatmail/relay's step 2 starts postfix on the new host (cmdeploy/src/cmdeploy/postfix/
 * deployer.py PostfixDeployer.install: the Debian package's postinst starts it, not blocked
 * by policy-rc.d), so these differ between the hosts by design; the queue does not.
 */
export const POSTFIX_RUNTIME = ['etc', 'lib', 'pid/*'] as const;

export const ROOTS: readonly RootSpec[] = [
  { name: 'mailboxes', path: null, optional: false },
  { name: 'dkimkeys', path: '/etc/dkimkeys', optional: false },
  { name: 'acme', path: '/var/lib/acme', optional: true },
  { name: 'spool', path: '/var/spool/postfix', optional: false, runtime: POSTFIX_RUNTIME },
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
