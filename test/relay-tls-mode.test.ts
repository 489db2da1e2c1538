import { describe, expect, it } from 'vitest';
import { CmError } from '../proto/errors';
import { isIpv4Literal, tlsModeOf } from '../controller/relay/tls-mode';
import { debianWarning, parseOsRelease } from '../controller/relay/debian';
import { chatmailIniLocation } from '../controller/relay/ini-location';

// Expectations follow chatmail/relay chatmaild/src/chatmaild/config.py (Config.__init__).
describe('tlsModeOf', () => {
  it('is acme for an ordinary domain, with the live/ paths', () => {
    const t = tlsModeOf({ mail_domain: 'mail.example.org' });
    expect(t).toMatchObject({ mode: 'acme', certPath: '/var/lib/acme/live/mail.example.org/fullchain', keyPath: '/var/lib/acme/live/mail.example.org/privkey', carry: ['/var/lib/acme'], neededBeforeStep2: false });
  });

  it('is self-signed for a domain starting with _ and for an IPv4 literal', () => {
    for (const d of ['_test.example.org', '192.0.2.7']) {
      const t = tlsModeOf({ mail_domain: d });
      expect(t.mode).toBe('self');
      expect(t.carry).toEqual(['/etc/ssl/certs/mailserver.pem', '/etc/ssl/private/mailserver.key']);
      expect(t.generatedByStep2WhenMissing).toBe(true);
    }
  });

  it('is external when tls_external_cert_and_key names two paths, whatever the domain', () => {
    for (const d of ['mail.example.org', '_x.example.org', '192.0.2.7']) {
      const t = tlsModeOf({ mail_domain: d, tls_external_cert_and_key: '  /etc/certs/fullchain.pem \t /etc/certs/key.pem ' });
      expect(t).toMatchObject({ mode: 'external', certPath: '/etc/certs/fullchain.pem', keyPath: '/etc/certs/key.pem', neededBeforeStep2: true });
      expect(t.carry).toEqual(['/etc/certs/fullchain.pem', '/etc/certs/key.pem']);
      expect(t.renewedBy).toContain('move it to the new host');
    }
  });

  it('ignores an empty or blank tls_external_cert_and_key, as .strip() does', () => {
    expect(tlsModeOf({ mail_domain: 'mail.example.org', tls_external_cert_and_key: '   ' }).mode).toBe('acme');
  });

  it('refuses one path or three, as chatmaild raises', () => {
    for (const v of ['/only/cert.pem', '/a /b /c']) {
      let err: unknown;
      try {
        tlsModeOf({ mail_domain: 'mail.example.org', tls_external_cert_and_key: v }, '/r/chatmail.ini');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CmError);
      expect((err as CmError).code).toBe('precondition.chatmail_ini');
      expect((err as CmError).message).toContain('two space-separated paths');
      expect((err as CmError).message).toContain('/r/chatmail.ini');
    }
  });

  it('takes an indented continuation (a newline) as a separator, as str.split() does', () => {
    expect(tlsModeOf({ mail_domain: 'm.example.org', tls_external_cert_and_key: '/c.pem\n/k.pem' })).toMatchObject({ certPath: '/c.pem', keyPath: '/k.pem' });
  });

  it('accepts IPv4 literals as Python ipaddress does', () => {
    expect(isIpv4Literal('10.0.0.1')).toBe(true);
    expect(isIpv4Literal('255.255.255.255')).toBe(true);
    for (const s of ['256.1.1.1', '1.2.3', '01.2.3.4', '1.2.3.4.5', 'a.b.c.d', '', '1.2.3.4 ']) expect(isIpv4Literal(s)).toBe(false);
  });
});

describe('debianWarning', () => {
  it('is quiet on Debian 12 and names the release otherwise', () => {
    const d12 = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n';
    const d13 = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_ID="13"\nID=debian\n';
    expect(parseOsRelease(d12)).toMatchObject({ ID: 'debian', VERSION_ID: '12' });
    expect(debianWarning(d12, 'new')).toBeUndefined();
    expect(debianWarning(d13, 'new')).toMatch(/^new runs Debian GNU\/Linux 13 \(trixie\); chatmail\/relay documents Debian 12 only/);
    expect(debianWarning('', 'old')).toContain('an unknown system');
  });
});

describe('chatmailIniLocation', () => {
  it('prefers --config, then CHATMAIL_INI, then ./chatmail.ini, relative to the checkout', () => {
    expect(chatmailIniLocation('/r', {}, 'other.ini')).toEqual({ file: '/r/other.ini', from: '--config' });
    expect(chatmailIniLocation('/r', { CHATMAIL_INI: '/etc/x.ini' }, 'other.ini').from).toBe('--config');
    expect(chatmailIniLocation('/r', { CHATMAIL_INI: 'conf/c.ini' })).toEqual({ file: '/r/conf/c.ini', from: 'CHATMAIL_INI' });
    expect(chatmailIniLocation('/r', { CHATMAIL_INI: '/etc/x.ini' })).toEqual({ file: '/etc/x.ini', from: 'CHATMAIL_INI' });
    expect(chatmailIniLocation('/r', {})).toEqual({ file: '/r/chatmail.ini', from: 'default' });
  });
});
