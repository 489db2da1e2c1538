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
] as const;

export type UnitName = (typeof ALLOWED_UNITS)[number];

/** Most units one HostOp call may name. */
export const HOST_OP_MAX_UNITS = 16;
/** The reply carries at most this much of a command's output (its tail). */
export const HOST_OP_OUTPUT_MAX_BYTES = 8 * 1024;
/** The reply carries at most this much of /etc/chatmail-version. */
export const CHATMAIL_VERSION_MAX_BYTES = 64 * 1024;

export function isHostOpName(s: string): s is HostOpName {
  return (HOST_OPS as readonly string[]).includes(s);
}

export function isUnitName(s: string): s is UnitName {
  return (ALLOWED_UNITS as readonly string[]).includes(s);
}
