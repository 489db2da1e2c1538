/**
 * The agent's TLS material (`--tls-dir`: ca.crt, agent.crt, agent.key, as `cmmigrate init`
 * writes them) and the credentials built from it. Peers must present a certificate of
 * the same CA; the role each call needs is checked per call from the certificate's OU.
 */
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { CmError, ROLE_AGENT, roleOf } from '../proto';

export interface AgentTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  /** 'old' or 'new', from the certificate's CN ("cmmigrate agent old"). */
  label: string;
}

export function loadAgentTls(dir: string): AgentTls {
  const read = (name: string): Buffer => {
    const file = path.join(dir, name);
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new CmError('agent.tls_missing', `cannot read ${file}: ${(err as Error).message}`, {
        hint: 'copy the agent\'s material written by `cmmigrate init` (.cmmigrate/tls/old or new) to this host and pass that directory as --tls-dir',
        cause: err,
      });
    }
  };
  const ca = read('ca.crt');
  const cert = read('agent.crt');
  const key = read('agent.key');
  let label = '';
  try {
    const x = new X509Certificate(cert);
    const cn = /CN=([^\n]+)/.exec(x.subject)?.[1] ?? '';
    label = cn.replace(/^cmmigrate agent\s*/, '');
    if (!/OU=agent/.test(x.subject)) {
      throw new CmError('agent.tls_wrong_role', `${path.join(dir, 'agent.crt')} is not an agent certificate (${x.subject.replace(/\n/g, ', ')})`, {
        hint: 'use the old/ or new/ directory that `cmmigrate init` wrote, not the controller\'s',
      });
    }
  } catch (err) {
    if (err instanceof CmError) throw err;
    throw new CmError('agent.tls_bad', `${path.join(dir, 'agent.crt')} is not a PEM certificate: ${(err as Error).message}`, { cause: err });
  }
  return { ca, cert, key, label };
}

export function serverCredentials(t: AgentTls): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(t.ca, [{ private_key: t.key, cert_chain: t.cert }], true);
}

/** Credentials for the receiving agent's call to the sending agent: it must be an agent too. */
export function peerCredentials(t: AgentTls): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(t.ca, t.key, t.cert, {
    checkServerIdentity: (host, cert) => {
      const err = tls.checkServerIdentity(host, cert);
      if (err) return err;
      if (roleOf(cert) !== ROLE_AGENT) {
        return new Error(`the peer at ${host} presented a certificate of role ${roleOf(cert) ?? 'none'}, not an agent's`);
      }
      return undefined;
    },
  });
}
