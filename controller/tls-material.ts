/**
 * The TLS material a connection uses, read from one leaf directory that controller/pki.ts
 * wrote (or that was copied to an agent's host): the CA certificate, and the controller's or
 * the agent's certificate and key. Reading only; making them is pki.ts's job.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CmError } from '../proto/errors';

/** PEM buffers ready for `tls` or `grpc.credentials`. */
export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/**
 * Reads one leaf directory: `ca.crt` and `controller.crt`/`.key` or `agent.crt`/`.key`,
 * as PEM buffers ready for `tls` or `grpc.credentials`.
 */
export async function loadTls(dir: string, role: 'controller' | 'agent'): Promise<TlsMaterial> {
  const read = async (name: string, marker: string): Promise<Buffer> => {
    const file = path.resolve(dir, name);
    let data: Buffer;
    try {
      data = await fsp.readFile(file);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const hint =
        role === 'controller'
          ? 'make this migration\'s TLS material with: cmmigrate init --plan FILE --domain MAIL_DOMAIN --old HOST --new HOST'
          : 'copy the agent directory that cmmigrate init made (.cmmigrate/tls/old or .cmmigrate/tls/new) to this host';
      if (e.code === 'ENOENT') throw new CmError('pki.missing', `TLS file ${file} is missing`, { hint, cause: err });
      throw new CmError('pki.unreadable', `cannot read TLS file ${file}: ${e.message}`, { hint, cause: err });
    }
    if (!data.includes(marker)) {
      throw new CmError('pki.invalid', `TLS file ${file} is not PEM: it lacks ${marker}`, {
        hint: 'run cmmigrate init again (with --force if the CA itself is damaged)',
      });
    }
    return data;
  };
  // One after the other, so that an error always names the first missing file.
  const ca = await read('ca.crt', '-----BEGIN CERTIFICATE-----');
  const cert = await read(`${role}.crt`, '-----BEGIN CERTIFICATE-----');
  const key = await read(`${role}.key`, '-----BEGIN PRIVATE KEY-----');
  return { ca, cert, key };
}
