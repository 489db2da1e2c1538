/**
 * Self-signed TLS certificates for tests, made as controller/pki.ts makes its own: an ECDSA
 * P-256 key from Node's WebCrypto and @peculiar/x509, with the DNS names as SANs and the
 * validity the test asks for (already expired, expiring soon, ...).
 */
import * as crypto from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(crypto.webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const DAY_MS = 24 * 60 * 60 * 1000;

export interface TestCertificate {
  /** PEM. */
  cert: string;
  /** PKCS#8 PEM. */
  key: string;
}

export async function selfSignedCertificate(o: { dnsNames: string[]; notBefore?: Date; notAfter?: Date }): Promise<TestCertificate> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await crypto.webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: crypto.randomBytes(8).toString('hex').replace(/^[89a-f]/, '1'),
    name: `CN=${o.dnsNames[0]}`,
    notBefore: o.notBefore ?? new Date(Date.now() - DAY_MS),
    notAfter: o.notAfter ?? new Date(Date.now() + 90 * DAY_MS),
    keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(o.dnsNames.map((value) => ({ type: 'dns' as const, value }))),
    ],
  });
  const der = await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { cert: cert.toString('pem'), key: x509.PemConverter.encode(der, 'PRIVATE KEY') };
}

export const days = (n: number): Date => new Date(Date.now() + n * DAY_MS);
