/** Agent addresses as both sides write them: `host:port`, `[v6]:port`. */
import * as net from 'node:net';
import { CmError } from './errors';

/** The port an agent listens on unless the plan says otherwise. */
export const DEFAULT_AGENT_PORT = 7826;

const LABEL = '[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?';
const HOSTNAME_RE = new RegExp(`^${LABEL}(?:\\.${LABEL})*\\.?$`);

/** Why `s` is no usable host (IP address without brackets, or DNS name), or undefined. */
export function hostProblem(s: string): string | undefined {
  if (s === '') return 'it is empty';
  if (net.isIP(s)) return undefined;
  if (s.startsWith('[') || s.includes(':')) return 'it is neither an IP address nor a host name (write IPv6 without brackets)';
  if (/^[0-9.]+$/.test(s)) return 'it is not a valid IPv4 address';
  if (s.length > 253 || !HOSTNAME_RE.test(s)) return 'it is neither an IP address nor a host name';
  return undefined;
}

/** `host:port`, with brackets around an IPv6 host. */
export function formatHostPort(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Splits `127.0.0.2:7826`, `[::1]:7826`, `::1`, `host` (the last two take `defaultPort`).
 * `label` names the flag or key in the error, e.g. `--old-agent`.
 */
export function parseHostPort(s: string, defaultPort?: number, label = 'address'): { host: string; port: number } {
  const bad = (why: string): CmError =>
    new CmError('usage.bad_option', `${label} ${JSON.stringify(s)} is not a usable host:port: ${why}`, {
      hint: `write it as HOST:PORT, e.g. 127.0.0.2:${DEFAULT_AGENT_PORT} or [2001:db8::2]:${DEFAULT_AGENT_PORT}`,
      details: { value: s },
    });
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(s);
  if (bracketed) {
    host = bracketed[1];
    portText = bracketed[2];
    if (!net.isIPv6(host)) throw bad('only an IPv6 address goes in brackets');
  } else if (net.isIPv6(s)) {
    host = s;
  } else {
    const colon = s.lastIndexOf(':');
    if (colon >= 0) {
      host = s.slice(0, colon);
      portText = s.slice(colon + 1);
    } else {
      host = s;
    }
    if (host.includes(':')) throw bad('put an IPv6 address in brackets, as [2001:db8::2]:7826');
  }
  const problem = hostProblem(host);
  if (problem) throw bad(`the host part ${problem}`);
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) throw bad('the port is missing');
    port = defaultPort;
  } else {
    if (!/^[0-9]{1,5}$/.test(portText)) throw bad(`the port ${JSON.stringify(portText)} is not a number`);
    port = Number(portText);
    if (port < 1 || port > 65535) throw bad(`the port ${port} is outside 1..65535`);
  }
  return { host, port };
}

