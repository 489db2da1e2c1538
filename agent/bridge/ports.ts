/**
 * The TCP ports a chatmail relay serves to the outside, as upstream deploys them: the
 * ports the bridge passes from the old host to the new one. Sources, chatmail/relay
 * (bare repo at /work/.mirror/chatmail+relay/repo, HEAD 48ad92bf, 2026-08-20):
 *
 * - cmdeploy/src/cmdeploy/postfix/master.cf.j2: `smtp inet` (25), `submission inet` (587),
 *   `smtps inet` (465), on `inet_interfaces = all` (main.cf.j2).
 * - cmdeploy/src/cmdeploy/dovecot/dovecot.conf.j2: `protocols = imap lmtp`, dovecot's
 *   built-in `imap` (143) and `imaps` (993) listeners; autoconfig.xml.j2 and dns.py's SRV
 *   records advertise 143 (STARTTLS) and 993 (SSL).
 * - cmdeploy/src/cmdeploy/nginx/nginx.conf.j2: `stream { listen 443; listen [::]:443; }`
 *   passing by ALPN to 127.0.0.1:465 (smtp), 127.0.0.1:993 (imap), else 127.0.0.1:8443
 *   (HTTPS: /new, mta-sts, iroh relay); `listen 80; listen [::]:80` (ACME challenges,
 *   redirect to https).
 * - cmdeploy/src/cmdeploy/deployers.py (port_services): the same seven public ports among
 *   the ones the deploy checks; the others there (53 unbound, 402 acmetool, 3340 iroh-relay
 *   behind nginx, 3903 mtail, 3904 dovecot stats, 8443 nginx, 10025/10026 reinject,
 *   10080-10083 filtermail) are local or internal and are not bridged.
 *
 * Not bridged: TURN on 3478/udp (chatmaild/src/chatmaild/metadata.py hands it out as
 * `<turn_hostname>:3478`); the bridge is TCP only, so calls of a client that still
 * resolves the old address fall back as they would with the old host down.
 */

/** One port the relay serves, with what listens on it upstream. */
export interface RelayPort {
  port: number;
  service: string;
  upstream: string;
}

/** The relay's public TCP ports, in the order an operator reads them. */
export const RELAY_TCP_PORTS: readonly RelayPort[] = [
  { port: 25, service: 'smtp (postfix smtpd, mail from other servers)', upstream: 'cmdeploy/src/cmdeploy/postfix/master.cf.j2' },
  { port: 80, service: 'http (nginx: ACME challenges, redirect to https)', upstream: 'cmdeploy/src/cmdeploy/nginx/nginx.conf.j2' },
  { port: 143, service: 'imap with STARTTLS (dovecot imap-login)', upstream: 'cmdeploy/src/cmdeploy/dovecot/dovecot.conf.j2' },
  { port: 443, service: 'https and ALPN smtp/imap (nginx stream)', upstream: 'cmdeploy/src/cmdeploy/nginx/nginx.conf.j2' },
  { port: 465, service: 'smtps submission (postfix smtpd)', upstream: 'cmdeploy/src/cmdeploy/postfix/master.cf.j2' },
  { port: 587, service: 'submission with STARTTLS (postfix smtpd)', upstream: 'cmdeploy/src/cmdeploy/postfix/master.cf.j2' },
  { port: 993, service: 'imaps (dovecot imap-login)', upstream: 'cmdeploy/src/cmdeploy/dovecot/dovecot.conf.j2' },
];

/** Just the port numbers of RELAY_TCP_PORTS. */
export const RELAY_PORT_NUMBERS: readonly number[] = RELAY_TCP_PORTS.map((p) => p.port);
