/** Agent addresses as both sides write them: `host:port`, `[v6]:port`. */
import * as net from 'node:net';
import { CmError } from './errors';

/** The port an agent listens on unless the plan says otherwise. */
export const DEFAULT_AGENT_PORT = 7826;

export interface HostPort {
  host: string;
  port: number;
}

/** Parse `host:port`, `[::1]:port`, or a bare host (default port). */
export function parseHostPort(s: string, defaultPort: number | undefined = DEFAULT_AGENT_PORT, what = 'address'): HostPort {
  const bad = (): never => {
    throw new CmError('usage.bad_option', `${what} ${JSON.stringify(s)}: expected HOST:PORT, such as 127.0.0.2:${DEFAULT_AGENT_PORT} or [::1]:${DEFAULT_AGENT_PORT}`);
  };
  if (typeof s !== 'string' || !s.trim()) bad();
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (v6) {
    host = v6[1];
    portText = v6[2];
    if (net.isIPv6(host) === false) bad();
  } else if (net.isIPv6(s)) {
    host = s;
  } else {
    const i = s.lastIndexOf(':');
    if (i >= 0) {
      host = s.slice(0, i);
      portText = s.slice(i + 1);
    } else host = s;
    if (!/^[A-Za-z0-9.-]+$/.test(host)) bad();
  }
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) bad();
    port = defaultPort as number;
  } else {
    port = Number(portText);
    if (!/^\d+$/.test(portText) || port < 1 || port > 65535) bad();
  }
  return { host, port };
}

/** `host:port` with IPv6 hosts in brackets, as gRPC wants it. */
export function formatHostPort(hp: HostPort): string {
  return net.isIPv6(hp.host) ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}
