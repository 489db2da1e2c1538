/**
 * The controller's side of the agents' host operations: typed calls of HostOp for unit
 * states, stop/start/restart, `postfix set-permissions`, `postsuper -s`,
 * /etc/chatmail-version and free disk. The agent runs only its allowlist
 * (proto/host-ops.ts); failures come back as CmErrors (host.command_failed, ...).
 */
import * as grpc from '@grpc/grpc-js';
import type { z } from 'zod';
import { CmError, ExternalTlsReadSchema, ExternalTlsWrittenSchema, RERUN, type ExternalTlsFile, type ExternalTlsWrite, type ExternalTlsWritten, type HostOpName, type HostOpReply__Output, type HostOpRequest } from '../proto';
import { unary, type AgentHandle } from './agent-client';

/** The mail services, kept stopped on the new host until step 6. */
export const MAIL_UNITS = ['postfix', 'dovecot', 'opendkim'] as const;
/** Services that keep changing mailboxes after `--disable-mail`; stopped for the final sync. */
export const MAILBOX_WRITERS = ['doveauth', 'chatmail-metadata', 'lastlogin', 'filtermail', 'filtermail-incoming', 'chatmail-expire.timer'] as const;

/** States in which a unit counts as running: a stop has not taken effect. */
const RUNNING = new Set(['active', 'activating', 'reloading', 'deactivating', 'refreshing']);

/** Those of `units` that still run, as `unit (state)`. */
export function runningUnits(states: Record<string, string>, units: readonly string[]): string[] {
  return units.filter((u) => RUNNING.has(states[u] ?? 'unknown')).map((u) => `${u} (${states[u]})`);
}

/** Those of `units` that are not active, as `unit (state)`. */
export function inactiveUnits(states: Record<string, string>, units: readonly string[]): string[] {
  return units.filter((u) => states[u] !== 'active').map((u) => `${u} (${states[u] ?? 'unknown'})`);
}

/** Long enough for the agent's own per-command timeout (120 s) plus an is-active after it. */
export const HOST_OP_DEADLINE_MS = 180_000;

export interface HostOps {
  /** Each unit's state as `systemctl is-active` prints it (active, inactive, failed, ...). */
  serviceStates(units: string[]): Promise<Record<string, string>>;
  /** `systemctl stop`; the units' states after it. */
  stopServices(units: string[]): Promise<Record<string, string>>;
  startServices(units: string[]): Promise<Record<string, string>>;
  restartServices(units: string[]): Promise<Record<string, string>>;
  /** `postfix set-permissions`; its output. */
  postfixSetPermissions(): Promise<string>;
  /** `postsuper -s`; its output. */
  postsuperRequeue(): Promise<string>;
  /** The content of /etc/chatmail-version, or undefined when the host has none. */
  chatmailVersion(): Promise<string | undefined>;
  /** Free and total bytes of the filesystem of the mailboxes dir (or its nearest existing ancestor). */
  freeDisk(): Promise<{ path: string; freeBytes: number; totalBytes: number }>;
  /** Bytes and count of the regular files of every root the final pass carries, hard links counted once. */
  treeSize(): Promise<{ bytes: number; files: number }>;
  /** `systemctl daemon-reload`; its output. */
  daemonReload(): Promise<string>;
  /** The base64 SubjectPublicKeyInfo of the host's DKIM private key (the key itself stays there). */
  dkimPublicKey(): Promise<string>;
  /** The external TLS files the host's deployed chatmail.ini names that exist there. */
  externalTlsFiles(): Promise<{ present: string[] }>;
  /** The host's /etc/os-release text; empty when it has none. */
  osRelease(): Promise<string>;
  /** Old host: both external TLS files its deployed chatmail.ini names, content and attributes. */
  externalTlsRead(): Promise<ExternalTlsFile[]>;
  /** New host: write them (checked on disk); `replace` names the digests an earlier attempt wrote. */
  externalTlsWrite(req: ExternalTlsWrite): Promise<ExternalTlsWritten[]>;
  /** `acmetool account-url` on the host; undefined when acmetool is missing or finds no URL. */
  acmeAccountUrl(): Promise<string | undefined>;
}

/** The host operations of one agent; `signal` cancels a call under way (step.interrupted). */
export function hostOps(agent: AgentHandle, signal?: AbortSignal): HostOps {
  const call = async (op: HostOpName, units: string[] = [], input = ''): Promise<HostOpReply__Output> => {
    try {
      return await unary<HostOpRequest, HostOpReply__Output>(agent, agent.client.HostOp, { op, units, input }, HOST_OP_DEADLINE_MS, signal);
    } catch (err) {
      const cause = (err as CmError).cause as grpc.ServiceError | undefined;
      if (cause?.code === grpc.status.UNIMPLEMENTED) {
        throw new CmError('agent.too_old', `the ${agent.side} agent ${agent.address} does not run host operations: it is an older cmmigrate-agent`, {
          hint: `reinstall the agents with this cmmigrate (cmmigrate install-agent), then run ${RERUN}`,
          cause: err,
        });
      }
      throw err;
    }
  };
  const states = (r: HostOpReply__Output): Record<string, string> => Object.fromEntries(r.units.map((u) => [u.unit, u.state]));
  return {
    serviceStates: async (units) => states(await call('service.is_active', units)),
    stopServices: async (units) => states(await call('service.stop', units)),
    startServices: async (units) => states(await call('service.start', units)),
    restartServices: async (units) => states(await call('service.restart', units)),
    postfixSetPermissions: async () => (await call('postfix.set_permissions')).output,
    postsuperRequeue: async () => (await call('postsuper.requeue')).output,
    chatmailVersion: async () => {
      const r = await call('chatmail_version.read');
      return r.chatmail_version_present ? r.chatmail_version : undefined;
    },
    freeDisk: async () => {
      const r = await call('disk.free');
      return { path: r.path, freeBytes: Number(r.free_bytes), totalBytes: Number(r.total_bytes) };
    },
    treeSize: async () => {
      const r = await call('tree.size');
      return { bytes: Number(r.tree_bytes), files: Number(r.tree_files) };
    },
    daemonReload: async () => (await call('systemd.daemon_reload')).output,
    dkimPublicKey: async () => (await call('dkim.public_key')).output.trim(),
    osRelease: async () => (await call('os_release.read')).output,
    externalTlsFiles: async () => ({ present: (await call('tls.external_files')).output.split('\n').filter(Boolean) }),
    externalTlsRead: async () => parseReply(ExternalTlsReadSchema, (await call('tls.external_read')).output, agent).files,
    acmeAccountUrl: async () => {
      try {
        return (await call('acme.account_url')).output.trim() || undefined;
      } catch (err) {
        if (err instanceof CmError && err.code === 'host.command_missing') return undefined;
        throw err;
      }
    },
    externalTlsWrite: async (req) => parseReply(ExternalTlsWrittenSchema, (await call('tls.external_write', [], JSON.stringify(req))).output, agent).written,
  };
}

/** An agent's JSON answer, checked (an edge: it came over the wire). */
function parseReply<T>(schema: z.ZodType<T>, output: string, agent: AgentHandle): T {
  let json: unknown;
  try {
    json = JSON.parse(output);
  } catch {
    json = undefined;
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    throw new CmError('agent.too_old', `the ${agent.side} agent ${agent.address} answered the external TLS operation in a form this cmmigrate does not read`, {
      hint: `reinstall the agents with this cmmigrate (cmmigrate install-agent), then run ${RERUN}`,
    });
  }
  return r.data;
}
