/**
 * Certificates of a migration's own CA (the `ca/` directory that `cmmigrate init` wrote)
 * in any role: the subject, SANs, key usage and extended key usage are the test's choice,
 * so that a certificate can pass every check but one (the role in its OU).
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(crypto.webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** A leaf's PEM certificate and PKCS#8 PEM key. */
export interface RoleCertificate {
  cert: string;
  key: string;
}

/** What the leaf says: OU (the role), CN, IP SANs, and whether it may serve, call, or both. */
export interface RoleSpec {
  ou: string;
  cn: string;
  ips: string[];
  eku: Array<'serverAuth' | 'clientAuth'>;
}

/** A leaf signed by the CA in `tlsDir/ca`, valid from an hour ago for 30 days, shaped as `spec` says. */
export async function issueRoleCertificate(tlsDir: string, spec: RoleSpec): Promise<RoleCertificate> {
  const caPem = await fs.readFile(path.join(tlsDir, 'ca', 'ca.crt'), 'utf8');
  const ca = new x509.X509Certificate(caPem);
  const caKey = await crypto.webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(await fs.readFile(path.join(tlsDir, 'ca', 'ca.key'), 'utf8')), EC_KEY, false, ['sign']);
  const keys = await crypto.webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify']);
  const usages = { serverAuth: x509.ExtendedKeyUsage.serverAuth, clientAuth: x509.ExtendedKeyUsage.clientAuth };
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '4' + crypto.randomBytes(15).toString('hex'),
    subject: [{ O: ['cmmigrate'] }, { OU: [spec.ou] }, { CN: [spec.cn] }],
    issuer: ca.subjectName,
    notBefore: new Date(Date.now() - 60 * 60 * 1000),
    notAfter: new Date(Date.now() + 30 * 24 * 60 * 60 * 1000),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(spec.eku.map((u) => usages[u])),
      new x509.SubjectAlternativeNameExtension(spec.ips.map((value) => ({ type: 'ip' as const, value }))),
      await x509.AuthorityKeyIdentifierExtension.create(ca.publicKey),
    ],
  });
  const der = await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { cert: cert.toString('pem'), key: x509.PemConverter.encode(der, 'PRIVATE KEY') };
}

/** A directory laid out as an agent's TLS material (ca.crt, agent.crt, agent.key) holding `leaf`, usable by startCraftedSender. */
export async function writeAgentDir(dir: string, tlsDir: string, leaf: RoleCertificate): Promise<string> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.copyFile(path.join(tlsDir, 'ca', 'ca.crt'), path.join(dir, 'ca.crt'));
  await fs.writeFile(path.join(dir, 'agent.crt'), leaf.cert);
  await fs.writeFile(path.join(dir, 'agent.key'), leaf.key, { mode: 0o600 });
  return dir;
}
