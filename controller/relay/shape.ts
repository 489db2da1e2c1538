/**
 * The shape of a relay (relay/upstream.ts RelayShape) from its chatmail.ini [params], as
 * chatmaild's config.py decides it: TLS mode, IPv4 literal, iroh relay, mtail. Pure.
 */
import { isIpv4Literal, tlsModeOf, type TlsSetup } from './tls-mode';
import type { RelayShape } from './upstream';

/** The relay's shape and its TLS setup, from the ini's [params]; `file` names it in errors. */
export function relayShapeOf(params: Readonly<Record<string, string>>, file = 'chatmail.ini'): { shape: RelayShape; tls: TlsSetup } {
  const tls = tlsModeOf(params, file);
  return {
    tls,
    shape: {
      tlsMode: tls.mode,
      ipv4: isIpv4Literal((params.mail_domain ?? '').trim()),
      // config.py: enable_iroh_relay = "iroh_relay" not in params; mtail_address optional.
      enableIroh: params.iroh_relay === undefined,
      mtail: Boolean(params.mtail_address?.trim()),
    },
  };
}
