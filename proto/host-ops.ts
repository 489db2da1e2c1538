/**
 * The allowlist of host operations an agent runs for the controller (the HostOp call):
 * named operations and the units they may touch. Both sides read this one list; an agent
 * refuses any other name, so nothing else can be executed through it.
 */

/** Every operation HostOp accepts, by its wire name. */
export const HOST_OPS = [
  'service.is_active',
  'service.stop',
  'service.start',
  'service.restart',
  'postfix.set_permissions',
  'postsuper.requeue',
  'chatmail_version.read',
  'disk.free',
  'tree.size',
  // `systemctl daemon-reload`: chatmail/relay's activate-only run never reloads systemd
  // (cmdeploy/src/cmdeploy/basedeploy.py Deployer.ensure_service), so drop-ins step 2 wrote
  // take effect only after one.
  'systemd.daemon_reload',
  // The public key (base64 SubjectPublicKeyInfo) of /etc/dkimkeys/opendkim.private, in the
  // reply's output; the private key never leaves the host.
  'dkim.public_key',
  // Which of the files that the host's deployed chatmail.ini names in
  // tls_external_cert_and_key exist as regular files (one path a line in the output). The
  // paths come from the host's own /usr/local/lib/chatmaild/chatmail.ini (chatmail/relay
  // cmdeploy/src/cmdeploy/basedeploy.py remote_chatmail_inipath), never from the wire.
  'tls.external_files',
  // /etc/os-release (at most 8 KiB, in the output): preflight warns off Debian 12, the one
  // release chatmail/relay documents (doc/source/getting_started.rst).
  'os_release.read',
  // External TLS (tls_external_cert_and_key), carried before step 2, whose configure requires
  // both files (chatmail/relay cmdeploy/src/cmdeploy/external/deployer.py); proto/external-tls.ts.
  // Old agent: both files its deployed chatmail.ini names, content and attributes, in the
  // output as JSON (not cut at HOST_OP_OUTPUT_MAX_BYTES; EXTERNAL_TLS_MAX_BYTES per file).
  'tls.external_read',
  // New agent: write them from the request's input (agent/host/external-tls.ts has the checks).
  'tls.external_write',
  // `acmetool --state=<root>/var/lib/acme --batch account-url`, as chatmail/relay's
  // `cmdeploy dns` asks for the URL its CAA record pins (cmdeploy/src/cmdeploy/remote/rdns.py
  // perform_initial_checks: shell("acmetool account-url", fail_ok=True)). The URL (its last
  // line) in the output; empty when acmetool fails (no account, ACME server unreachable).
  'acme.account_url',
] as const;

export type HostOpName = (typeof HOST_OPS)[number];

/** The operations that take units; the others take none. */
export const SERVICE_OPS: readonly HostOpName[] = ['service.is_active', 'service.stop', 'service.start', 'service.restart'];

/** The relay's systemd units a service operation may name, exactly as written here. */
export const ALLOWED_UNITS = [
  'postfix',
  'dovecot',
  'opendkim',
  'doveauth',
  'chatmail-metadata',
  'lastlogin',
  'filtermail',
  'filtermail-incoming',
  'chatmail-expire.timer',
  'nginx',
  // Full names of the units chatmail/relay 1.12.0 deploys (cmdeploy/src/cmdeploy/deployers.py
  // and the deployers it lists), for the stops of step 3, the new host's inert units and the
  // checks of step 6.
  'postfix.service',
  'dovecot.service',
  'opendkim.service',
  'doveauth.service',
  'chatmail-metadata.service',
  'lastlogin.service',
  'filtermail.service',
  'filtermail-incoming.service',
  'filtermail-transport.service',
  'chatmail-expire.service',
  'chatmail-fsreport.service',
  'chatmail-fsreport.timer',
  'acmetool-reconcile.service',
  'acmetool-reconcile.timer',
  'acmetool-redirector.service',
  'tls-cert-reload.path',
  'turnserver.service',
  'iroh-relay.service',
  'nginx.service',
  'fcgiwrap.service',
  'unbound.service',
  'mtail.service',
] as const;

export type UnitName = (typeof ALLOWED_UNITS)[number];

/** Most units one HostOp call may name. */
export const HOST_OP_MAX_UNITS = 16;
/** The reply carries at most this much of a command's output (its tail). */
export const HOST_OP_OUTPUT_MAX_BYTES = 8 * 1024;
/** The reply carries at most this much of /etc/chatmail-version. */
export const CHATMAIL_VERSION_MAX_BYTES = 64 * 1024;

/** The one operation that takes the request's `input`. */
export const INPUT_OPS: readonly HostOpName[] = ['tls.external_write'];

export function isHostOpName(s: string): s is HostOpName {
  return (HOST_OPS as readonly string[]).includes(s);
}

export function isUnitName(s: string): s is UnitName {
  return (ALLOWED_UNITS as readonly string[]).includes(s);
}
