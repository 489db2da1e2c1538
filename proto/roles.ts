/**
 * The roles of a migration's certificates. The controller's CA writes a role into each
 * certificate's OU; every peer is checked for the role its calls need.
 */

/** The certificate OU that names a peer's role. */
export const ROLE_CONTROLLER = 'controller';
export const ROLE_AGENT = 'agent';

/** The role of a verified peer certificate (its OU), as Node's TLS layer reports it. */
export function roleOf(cert: unknown): string | undefined {
  const ou = (cert as { subject?: { OU?: string | string[] } } | undefined)?.subject?.OU;
  return Array.isArray(ou) ? ou[0] : ou;
}
