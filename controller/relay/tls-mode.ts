/**
 * The relay's TLS mode, decided from chatmail.ini exactly as upstream's chatmaild does
 * (chatmail/relay `chatmaild/src/chatmaild/config.py`, `Config.__init__`), and what each
 * mode asks of a move: which files carry the certificate, whether step 2's configure stage
 * checks them, and what renews them. Pure: it takes the ini's [params] values.
 */
import { CmError } from '../../proto/errors';

/** `external`: `tls_external_cert_and_key` is set; `self`: a `_` domain or an IPv4 literal; `acme`: the rest. */
export type TlsMode = 'external' | 'self' | 'acme';

export interface TlsSetup {
  mode: TlsMode;
  /** Where dovecot, postfix and nginx read the certificate chain and the key. */
  certPath: string;
  keyPath: string;
  /**
   * What a move must carry for this mode, besides mailboxes, DKIM and spool: the ACME state
   * directory, or the two files (at their paths, owners and modes kept).
   */
  carry: readonly string[];
  /**
   * External: step 2 (configure) fails with "External TLS file not found on server" unless
   * both files already exist on the new host (cmdeploy/src/cmdeploy/external/deployer.py).
   */
  neededBeforeStep2: boolean;
  /**
   * Self-signed: step 2 generates a new pair when the certificate file is missing
   * (cmdeploy/src/cmdeploy/selfsigned/deployer.py `[ -f CERT ] || openssl req ...`).
   */
  generatedByStep2WhenMissing: boolean;
  /** Who renews the certificate, in words for the summary. */
  renewedBy: string;
}

/**
 * True when `s` is what Python's `ipaddress.IPv4Address(s)` accepts: four decimal octets,
 * each 0-255, no leading zeros (chatmaild `is_valid_ipv4`).
 */
export function isIpv4Literal(s: string): boolean {
  const parts = s.split('.');
  return parts.length === 4 && parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255);
}

/** Self-signed certificate paths of chatmaild's config.py. */
export const SELF_SIGNED_CERT = '/etc/ssl/certs/mailserver.pem';
export const SELF_SIGNED_KEY = '/etc/ssl/private/mailserver.key';
/** acmetool's state directory (the deployer writes conf/ and desired/ there). */
export const ACME_STATE_DIR = '/var/lib/acme';

/**
 * The TLS mode of a relay from its chatmail.ini [params] (raw values as read, untrimmed is
 * fine). `file` names the ini in errors. Throws `precondition.chatmail_ini` where chatmaild
 * raises (a `tls_external_cert_and_key` that is not two paths, no mail_domain).
 */
export function tlsModeOf(params: Readonly<Record<string, string>>, file = 'chatmail.ini'): TlsSetup {
  const domain = (params.mail_domain ?? '').trim();
  if (!domain) {
    throw new CmError('precondition.chatmail_ini', `${file} has no mail_domain in its [params] section`, { hint: `set mail_domain in ${file}`, details: { file } });
  }
  // config.py: external = params.pop("tls_external_cert_and_key", "").strip(); parts = external.split()
  const external = (params.tls_external_cert_and_key ?? '').trim();
  if (external) {
    const parts = external.split(/\s+/);
    if (parts.length !== 2) {
      throw new CmError(
        'precondition.chatmail_ini',
        `${file}: tls_external_cert_and_key must have two space-separated paths: CERT_PATH KEY_PATH (it has ${parts.length})`,
        { hint: `correct tls_external_cert_and_key in ${file}; cmdeploy refuses it too`, details: { file } },
      );
    }
    const [certPath, keyPath] = parts;
    return {
      mode: 'external',
      certPath,
      keyPath,
      carry: [certPath, keyPath],
      neededBeforeStep2: true,
      generatedByStep2WhenMissing: false,
      renewedBy: `whatever renews ${certPath} on the old host (certbot, a proxy, a cron job): move it to the new host too`,
    };
  }
  if (domain.startsWith('_') || isIpv4Literal(domain)) {
    return {
      mode: 'self',
      certPath: SELF_SIGNED_CERT,
      keyPath: SELF_SIGNED_KEY,
      carry: [SELF_SIGNED_CERT, SELF_SIGNED_KEY],
      neededBeforeStep2: false,
      generatedByStep2WhenMissing: true,
      renewedBy: 'nothing: the self-signed certificate is valid for 100 years',
    };
  }
  return {
    mode: 'acme',
    certPath: `${ACME_STATE_DIR}/live/${domain}/fullchain`,
    keyPath: `${ACME_STATE_DIR}/live/${domain}/privkey`,
    carry: [ACME_STATE_DIR],
    neededBeforeStep2: false,
    generatedByStep2WhenMissing: false,
    renewedBy: 'acmetool-reconcile.timer on the relay (daily), with the carried ACME account',
  };
}
