/**
 * The per-migration PKI: one CA (ECDSA P-256) made by the controller, and from it a
 * certificate for the controller (OU=controller, clientAuth) and one per agent (OU=agent,
 * serverAuth + clientAuth, SANs for every address of its host). The OU is the role an
 * agent checks on each call.
 *
 * Layout under `tlsDir` (each leaf directory holds ca.crt, so an agent directory is usable
 * as is with `cmmigrate-agent serve --tls-dir DIR`):
 *
 *     ca/ca.crt ca/ca.key
 *     controller/ca.crt controller/controller.crt controller/controller.key
 *     old/ca.crt old/agent.crt old/agent.key
 *     new/ca.crt new/agent.crt new/agent.key
 *
 * Keys are PKCS#8 PEM, mode 0600, in 0700 directories; every file is written to a temp file
 * and renamed. `ensurePki` is idempotent: it keeps an existing CA and reissues a leaf only
 * when it is missing, broken, not from this CA, near expiry, or names other hosts.
 */
import * as crypto from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type * as X509 from '@peculiar/x509';
import { CmError } from '../proto/errors';
import { writeFileAtomicSync } from './atomic-file';
import { hostProblem } from './plan';

/** SAN entries (IP addresses or DNS names) per agent. */
export interface PkiHosts {
  old: string[];
  new: string[];
}

export type PkiLeaf = 'controller' | 'old' | 'new';

export interface PkiResult {
  /** False when an existing CA was kept. */
  created: boolean;
  tlsDir: string;
  /** The 8 hex digits that name this CA in its subject. */
  caId: string;
  /** The leaf certificates written by this call (all three when `created`). */
  issued: PkiLeaf[];
  /** The SANs each agent certificate carries, as `IP:127.0.0.2` or `DNS:host.example`. */
  sans: Record<'old' | 'new', string[]>;
}

const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 60 * 60 * 1000;
const VALIDITY_MS = 365 * DAY_MS;
/** Clock skew between the hosts that a fresh certificate tolerates. */
const BACKDATE_MS = 10 * 60 * 1000;
/** A leaf that expires sooner than this is reissued. */
const RENEW_BEFORE_MS = 30 * DAY_MS;
const CONTROLLER_SAN = 'cmmigrate-controller';
const CA_CN_RE = /^cmmigrate CA for (.+) ([0-9a-f]{8})$/;

/** The directory that holds one leaf's material. */
export function leafDir(tlsDir: string, leaf: PkiLeaf): string {
  return path.join(tlsDir, leaf);
}

// ---------------------------------------------------------------------------------------
// The X.509 library

type X509Lib = typeof X509;
let lib: Promise<X509Lib> | undefined;

/** @peculiar/x509 v2 resolves its algorithms through tsyringe, which needs the Reflect metadata API. */
function x509(): Promise<X509Lib> {
  lib ??= (async () => {
    await import('reflect-metadata');
    const m = await import('@peculiar/x509');
    m.cryptoProvider.set(crypto.webcrypto as unknown as Parameters<typeof m.cryptoProvider.set>[0]);
    return m;
  })();
  return lib;
}

// ---------------------------------------------------------------------------------------
// Files

async function ensureDir(dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  await fsp.chmod(dir, 0o700);
}

/** Writes `file` through a temp file in the same directory, then renames it into place. */
async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

// ---------------------------------------------------------------------------------------
// Names

interface San {
  type: 'ip' | 'dns';
  value: string;
}

function canonicalIp(ip: string): string {
  const bare = ip.replace(/%.*$/, ''); // a zone index has no place in a certificate
  if (net.isIPv4(bare)) return bare;
  return new URL(`http://[${bare}]/`).hostname.slice(1, -1);
}

function sanOf(host: string): San {
  const h = host.replace(/^\[(.*)\]$/, '$1');
  const why = hostProblem(h);
  if (why) {
    throw new CmError('usage.bad_option', `cannot issue a certificate for host ${JSON.stringify(host)}: ${why}`, {
      hint: 'give each host as an IP address or a DNS name',
    });
  }
  return net.isIP(h) ? { type: 'ip', value: canonicalIp(h) } : { type: 'dns', value: h.toLowerCase().replace(/\.$/, '') };
}

const sanText = (s: San): string => `${s.type === 'ip' ? 'IP' : 'DNS'}:${s.value}`;

/** The SANs for a list of hosts, canonical and without duplicates, in the given order. */
function sansOf(hosts: string[]): San[] {
  const seen = new Set<string>();
  const out: San[] = [];
  for (const h of hosts) {
    const s = sanOf(h);
    if (!seen.has(sanText(s))) {
      seen.add(sanText(s));
      out.push(s);
    }
  }
  return out;
}

/** A CN stays within X.520's 64 characters. */
function caCommonName(domain: string, caId: string): string {
  const room = 64 - 'cmmigrate CA for  '.length - caId.length;
  const d = domain.length <= room ? domain : `${domain.slice(0, room - 3)}...`;
  return `cmmigrate CA for ${d} ${caId}`;
}

// ---------------------------------------------------------------------------------------
// Issuing

interface Ca {
  cert: X509.X509Certificate;
  certPem: string;
  signingKey: crypto.webcrypto.CryptoKey;
  node: crypto.X509Certificate;
  caId: string;
}

interface LeafSpec {
  leaf: PkiLeaf;
  base: 'controller' | 'agent';
  ou: 'controller' | 'agent';
  cn: string;
  eku: string[];
  sans: San[];
}

function serialNumber(): string {
  const b = crypto.randomBytes(16);
  b[0] = (b[0] & 0x7f) | 0x40; // positive, and no leading zero byte to be stripped
  return b.toString('hex');
}

async function newKeyPair(): Promise<crypto.webcrypto.CryptoKeyPair> {
  return crypto.webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify']);
}

async function keyPem(m: X509Lib, key: crypto.webcrypto.CryptoKey): Promise<string> {
  const der = await crypto.webcrypto.subtle.exportKey('pkcs8', key);
  return withNewline(m.PemConverter.encode(der, 'PRIVATE KEY'));
}

const withNewline = (s: string): string => (s.endsWith('\n') ? s : `${s}\n`);

async function createCa(m: X509Lib, tlsDir: string, domain: string): Promise<Ca> {
  const caId = crypto.randomBytes(4).toString('hex');
  const keys = await newKeyPair();
  const now = Date.now();
  const cert = await m.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: [{ O: ['cmmigrate'] }, { CN: [caCommonName(domain, caId)] }],
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + VALIDITY_MS),
    keys,
    signingAlgorithm: SIGNING,
    extensions: [
      new m.BasicConstraintsExtension(true, 0, true),
      new m.KeyUsagesExtension(m.KeyUsageFlags.keyCertSign | m.KeyUsageFlags.cRLSign, true),
      await m.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const certPem = withNewline(cert.toString('pem'));
  const dir = path.join(tlsDir, 'ca');
  await ensureDir(dir);
  // Key first: a crash in between leaves no ca.crt, so the next run starts afresh.
  writeFileAtomicSync(path.join(dir, 'ca.key'), await keyPem(m, keys.privateKey), 0o600);
  writeFileAtomicSync(path.join(dir, 'ca.crt'), certPem, 0o644);
  return { cert, certPem, signingKey: keys.privateKey, node: new crypto.X509Certificate(certPem), caId };
}

/** The CA in `tlsDir`, or undefined when there is no ca.crt. */
async function loadCa(m: X509Lib, tlsDir: string, domain: string): Promise<Ca | undefined> {
  const certFile = path.join(tlsDir, 'ca', 'ca.crt');
  const keyFile = path.join(tlsDir, 'ca', 'ca.key');
  const certPem = await readIfExists(certFile);
  if (certPem === undefined) return undefined;
  const broken = (why: string, cause?: unknown): CmError =>
    new CmError('pki.invalid', `the CA in ${path.dirname(certFile)} is unusable: ${why}`, {
      hint: 'run cmmigrate init again with --force to make a new CA, then give both agents their new material',
      cause,
    });
  let node: crypto.X509Certificate;
  let key: crypto.KeyObject;
  try {
    node = new crypto.X509Certificate(certPem);
  } catch (err) {
    throw broken(`${certFile} is not a PEM certificate`, err);
  }
  const keyPemText = await readIfExists(keyFile);
  if (keyPemText === undefined) throw broken(`${keyFile} is missing`);
  try {
    key = crypto.createPrivateKey(keyPemText);
  } catch (err) {
    throw broken(`${keyFile} is not a PEM private key`, err);
  }
  if (!node.ca || !node.checkPrivateKey(key)) throw broken(`${keyFile} does not belong to ${certFile}, or it is no CA`);
  if (Date.parse(node.validTo) < Date.now() + DAY_MS) {
    throw new CmError('pki.expired', `the CA in ${path.dirname(certFile)} expires ${node.validTo}`, {
      hint: 'run cmmigrate init again with --force to make a new CA, then give both agents their new material',
    });
  }
  const cn = node.toLegacyObject().subject.CN;
  const match = typeof cn === 'string' ? CA_CN_RE.exec(cn) : null;
  if (!match) throw broken(`its subject ${JSON.stringify(cn)} is not one cmmigrate makes`);
  const [, cnDomain, caId] = match;
  if (cnDomain !== caCommonName(domain, caId).slice('cmmigrate CA for '.length, -(caId.length + 1))) {
    throw new CmError('pki.exists', `the CA in ${path.dirname(certFile)} was made for ${cnDomain}, not ${domain}`, {
      hint: `run cmmigrate init with --force to replace it by a CA for ${domain}, or use a plan in another directory`,
    });
  }
  const signingKey = await crypto.webcrypto.subtle.importKey(
    'pkcs8',
    key.export({ type: 'pkcs8', format: 'der' }),
    EC_KEY,
    false,
    ['sign'],
  );
  return { cert: new m.X509Certificate(certPem), certPem, signingKey, node, caId };
}

async function issueLeaf(m: X509Lib, tlsDir: string, ca: Ca, spec: LeafSpec): Promise<void> {
  const keys = await newKeyPair();
  const now = Date.now();
  const cert = await m.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: [{ O: ['cmmigrate'] }, { OU: [spec.ou] }, { CN: [spec.cn] }],
    issuer: ca.cert.subjectName,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(Math.min(now + VALIDITY_MS, ca.cert.notAfter.getTime())),
    publicKey: keys.publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm: SIGNING,
    extensions: [
      new m.BasicConstraintsExtension(false, undefined, true),
      new m.KeyUsagesExtension(m.KeyUsageFlags.digitalSignature, true),
      new m.ExtendedKeyUsageExtension(spec.eku),
      new m.SubjectAlternativeNameExtension(spec.sans),
      await m.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await m.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey),
    ],
  });
  const dir = leafDir(tlsDir, spec.leaf);
  await ensureDir(dir);
  writeFileAtomicSync(path.join(dir, 'ca.crt'), ca.certPem, 0o644);
  writeFileAtomicSync(path.join(dir, `${spec.base}.key`), await keyPem(m, keys.privateKey), 0o600);
  writeFileAtomicSync(path.join(dir, `${spec.base}.crt`), withNewline(cert.toString('pem')), 0o644);
}

/** Whether the leaf on disk is complete, from this CA, for this role and these SANs. */
async function leafIsCurrent(m: X509Lib, tlsDir: string, ca: Ca, spec: LeafSpec): Promise<boolean> {
  const dir = leafDir(tlsDir, spec.leaf);
  const [caPem, certPem, keyPemText] = await Promise.all([
    readIfExists(path.join(dir, 'ca.crt')),
    readIfExists(path.join(dir, `${spec.base}.crt`)),
    readIfExists(path.join(dir, `${spec.base}.key`)),
  ]);
  if (caPem === undefined || certPem === undefined || keyPemText === undefined) return false;
  if (caPem.trim() !== ca.certPem.trim()) return false;
  try {
    const node = new crypto.X509Certificate(certPem);
    if (!node.checkIssued(ca.node) || !node.verify(ca.node.publicKey)) return false;
    if (!node.checkPrivateKey(crypto.createPrivateKey(keyPemText))) return false;
    if (node.toLegacyObject().subject.OU !== spec.ou) return false;
    if (Date.parse(node.validTo) < Date.now() + RENEW_BEFORE_MS) return false;
    const ext = new m.X509Certificate(certPem).getExtension(m.SubjectAlternativeNameExtension);
    const have = new Set((ext?.names.items ?? []).map((n) => sanText(sanOf(n.value))));
    const want = new Set(spec.sans.map(sanText));
    return have.size === want.size && [...want].every((s) => have.has(s));
  } catch {
    return false; // unreadable: issue it afresh
  }
}

/**
 * Makes sure `tlsDir` holds a CA for `domain` and current certificates for the controller
 * and both agents. With `force`, or without a CA, makes a new CA and every leaf.
 */
export async function ensurePki(
  tlsDir: string,
  domain: string,
  hosts: PkiHosts,
  opts: { force?: boolean } = {},
): Promise<PkiResult> {
  const dir = path.resolve(tlsDir);
  const sides = { old: sansOf(hosts.old), new: sansOf(hosts.new) };
  for (const side of ['old', 'new'] as const) {
    if (sides[side].length === 0) {
      throw new CmError('usage.bad_option', `no host given for the ${side} agent's certificate`, {
        hint: `name the ${side} host: cmmigrate init --${side} HOST ...`,
      });
    }
  }
  const m = await x509();
  await ensureDir(dir);
  const existing = opts.force ? undefined : await loadCa(m, dir, domain);
  const ca = existing ?? (await createCa(m, dir, domain));

  const agent = (side: 'old' | 'new'): LeafSpec => ({
    leaf: side,
    base: 'agent',
    ou: 'agent',
    cn: `cmmigrate agent ${side}`,
    eku: [m.ExtendedKeyUsage.serverAuth, m.ExtendedKeyUsage.clientAuth],
    sans: sides[side],
  });
  const specs: LeafSpec[] = [
    {
      leaf: 'controller',
      base: 'controller',
      ou: 'controller',
      cn: 'cmmigrate controller',
      eku: [m.ExtendedKeyUsage.clientAuth],
      sans: [{ type: 'dns', value: CONTROLLER_SAN }],
    },
    agent('old'),
    agent('new'),
  ];
  const issued: PkiLeaf[] = [];
  for (const spec of specs) {
    if (existing && (await leafIsCurrent(m, dir, ca, spec))) continue;
    await issueLeaf(m, dir, ca, spec);
    issued.push(spec.leaf);
  }
  return {
    created: !existing,
    tlsDir: dir,
    caId: ca.caId,
    issued,
    sans: { old: sides.old.map(sanText), new: sides.new.map(sanText) },
  };
}
