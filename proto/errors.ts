/**
 * The one error type of cmmigrate. Every failure that a person may see carries a stable
 * dotted code (`transfer.digest_mismatch`), a message that names the path, host or flag,
 * and a hint with the next thing to do. Agents map it to a gRPC status with metadata;
 * the controller maps it back, so a user never sees a bare "13 INTERNAL".
 */
import type * as grpcTypes from '@grpc/grpc-js';
// Only gRPC's status numbers at load time: the controller loads this module on every start,
// and the rest of grpc-js (http2, tls) only once it talks to an agent (see grpcRuntime).
import { Status } from '@grpc/grpc-js/build/src/constants';

const grpc = { status: Status } as const;

/** Exit codes of the controller, documented in `cmmigrate --help` and the README. */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  precondition: 3,
  interrupted: 130,
} as const;

/**
 * Every error code of cmmigrate, with the exit code the controller ends with and the gRPC
 * status the code travels as. The one table: CmError takes only these codes, the README's
 * tables are checked against it (test/error-registry.test.ts).
 */
export const ERRORS = {
  'agent.bind_failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'agent.identity_unreadable': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'agent.op_not_allowed': { exit: ExitCode.failed, status: grpc.status.INVALID_ARGUMENT },
  'agent.path_mailboxes_mismatch': { exit: ExitCode.failed, status: grpc.status.PERMISSION_DENIED },
  'agent.path_not_directory': { exit: ExitCode.failed, status: grpc.status.PERMISSION_DENIED },
  'agent.path_outside_root': { exit: ExitCode.failed, status: grpc.status.PERMISSION_DENIED },
  'agent.port_in_use': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'agent.tls_bad': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'agent.tls_missing': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'agent.tls_wrong_role': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'agent.too_old': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'agent.unit_not_allowed': { exit: ExitCode.failed, status: grpc.status.INVALID_ARGUMENT },
  'agents.unreachable': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'agents.wrong_agent': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'apt.install_failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'apt.purge_failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'auth.refused': { exit: ExitCode.failed, status: grpc.status.PERMISSION_DENIED },
  'auth.wrong_role': { exit: ExitCode.failed, status: grpc.status.PERMISSION_DENIED },
  'bridge.aborted': { exit: ExitCode.failed, status: grpc.status.CANCELLED },
  'bridge.already_running': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'bridge.bad_config': { exit: ExitCode.usage, status: grpc.status.INVALID_ARGUMENT },
  'bridge.bad_limits': { exit: ExitCode.usage, status: grpc.status.INVALID_ARGUMENT },
  'bridge.bad_state': { exit: ExitCode.failed, status: grpc.status.FAILED_PRECONDITION },
  'bridge.listener_error': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'bridge.listen_failed': { exit: ExitCode.failed, status: grpc.status.FAILED_PRECONDITION },
  'bridge.resume_failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'bridge.state_write_failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'connect.cancelled': { exit: ExitCode.failed, status: grpc.status.UNAVAILABLE },
  'connect.failed': { exit: ExitCode.failed, status: grpc.status.UNAVAILABLE },
  'connect.incomplete': { exit: ExitCode.failed, status: grpc.status.UNAVAILABLE },
  'connect.lost': { exit: ExitCode.failed, status: grpc.status.UNAVAILABLE },
  'connect.stalled': { exit: ExitCode.failed, status: grpc.status.UNAVAILABLE },
  'connect.timeout': { exit: ExitCode.failed, status: grpc.status.UNAVAILABLE },
  'connect.unavailable': { exit: ExitCode.failed, status: grpc.status.UNAVAILABLE },
  'dns.lookup_failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'dns.not_switched': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'host.bad_file': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'host.tls_file_conflict': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'host.tls_path_refused': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'host.command_failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'host.command_missing': { exit: ExitCode.failed, status: grpc.status.FAILED_PRECONDITION },
  'host.command_timeout': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'host.statfs_failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'install.agent_not_started': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'install.agent_unreachable': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'install.bundle_missing': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'install.node_too_old': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'internal.unexpected': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'journal.corrupt': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'journal.other_migration': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'journal.unreadable': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'pki.exists': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'pki.expired': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'pki.invalid': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'pki.missing': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'pki.unreadable': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'plan.exists': { exit: ExitCode.usage, status: grpc.status.INVALID_ARGUMENT },
  'plan.invalid': { exit: ExitCode.usage, status: grpc.status.INVALID_ARGUMENT },
  'plan.no_relay_dir': { exit: ExitCode.usage, status: grpc.status.INVALID_ARGUMENT },
  'plan.not_found': { exit: ExitCode.usage, status: grpc.status.INVALID_ARGUMENT },
  'plan.syntax': { exit: ExitCode.usage, status: grpc.status.INVALID_ARGUMENT },
  'plan.unknown_key': { exit: ExitCode.usage, status: grpc.status.INVALID_ARGUMENT },
  'plan.unreadable': { exit: ExitCode.usage, status: grpc.status.INVALID_ARGUMENT },
  'precondition.agent_role': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.agent_versions': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.chatmail_ini': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.disk_space': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.ip_literal_domain': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.new_addresses': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.no_chatmail_ini': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.no_cmdeploy': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.no_cmdeploy_stages': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.no_node': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.no_systemd': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.not_debian': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.not_relay_checkout': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.not_root': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.port_in_use': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.tls_files_missing': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.relay_venv': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'precondition.unsupported_debian': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'remote.failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'report.journal_invalid': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'report.journal_unreadable': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'report.no_journal': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'ssh.auth_failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'ssh.failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'ssh.host_key': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'ssh.not_installed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'ssh.refused': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'ssh.timeout': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'ssh.unknown_host': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'ssh.unreachable': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.already_migrated': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.certificate_expired': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.certificate_mismatch': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.certificate_untrusted': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.cmdeploy_failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.confirmation_needed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.full_verify_failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.interrupted': { exit: ExitCode.interrupted, status: grpc.status.INTERNAL },
  'step.mail_still_active': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.not_confirmed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.nothing_to_roll_back': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.out_of_order': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.port_closed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.rollback_refused': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.dns_record_mismatch': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.http_failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.service_not_active': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.service_still_active': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.tls_failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'step.verify_failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'transfer.cancelled': { exit: ExitCode.failed, status: grpc.status.DATA_LOSS },
  'transfer.device_node': { exit: ExitCode.failed, status: grpc.status.DATA_LOSS },
  'transfer.digest_mismatch': { exit: ExitCode.failed, status: grpc.status.DATA_LOSS },
  'transfer.disk_full': { exit: ExitCode.failed, status: grpc.status.DATA_LOSS },
  'transfer.max_delete': { exit: ExitCode.failed, status: grpc.status.DATA_LOSS },
  'transfer.missing_owners': { exit: ExitCode.precondition, status: grpc.status.FAILED_PRECONDITION },
  'transfer.source_changed': { exit: ExitCode.failed, status: grpc.status.DATA_LOSS },
  'transfer.source_root_missing': { exit: ExitCode.failed, status: grpc.status.DATA_LOSS },
  'transfer.source_unreadable': { exit: ExitCode.failed, status: grpc.status.DATA_LOSS },
  'transfer.type_conflict': { exit: ExitCode.failed, status: grpc.status.DATA_LOSS },
  'uninstall.stop_failed': { exit: ExitCode.failed, status: grpc.status.INTERNAL },
  'usage.bad_option': { exit: ExitCode.usage, status: grpc.status.INVALID_ARGUMENT },
  'usage.bad_request': { exit: ExitCode.usage, status: grpc.status.INVALID_ARGUMENT },
  'usage.missing_option': { exit: ExitCode.usage, status: grpc.status.INVALID_ARGUMENT },
  'wire.bad_link': { exit: ExitCode.failed, status: grpc.status.DATA_LOSS },
  'wire.bad_path': { exit: ExitCode.failed, status: grpc.status.DATA_LOSS },
  'wire.device_node': { exit: ExitCode.failed, status: grpc.status.DATA_LOSS },
  'wire.protocol': { exit: ExitCode.failed, status: grpc.status.DATA_LOSS },
  'wire.protocol_version': { exit: ExitCode.failed, status: grpc.status.DATA_LOSS },
} as const satisfies Record<string, { exit: number; status: Status }>;

/** A stable dotted error code: one key of ERRORS. */
export type ErrorCode = keyof typeof ERRORS;

/** Whether a code from the wire or a file is one this version knows. */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERRORS, code);
}

/** grpc-js itself, loaded on first use (an error with gRPC metadata means it is loaded already). */
function grpcRuntime(): typeof import('@grpc/grpc-js') {
  return require('@grpc/grpc-js') as typeof import('@grpc/grpc-js');
}

const CODE_KEY = 'cmm-code';
const HINT_KEY = 'cmm-hint';

export interface CmErrorOptions {
  hint?: string;
  cause?: unknown;
  /** Extra structured facts for logs and --json (never file contents or secrets). */
  details?: Record<string, unknown>;
  /** Exit code the controller uses when this error ends a command. */
  exitCode?: number;
}

export class CmError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  readonly details?: Record<string, unknown>;
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, opts: CmErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CmError';
    this.code = code;
    this.hint = opts.hint;
    this.details = opts.details;
    this.exitCode = opts.exitCode ?? ERRORS[code].exit;
  }

  /** This error as a gRPC status object, ready for `callback(err)` or `call.emit('error', err)`. */
  toServiceError(): Partial<grpcTypes.StatusObject> & Error {
    const metadata = new (grpcRuntime().Metadata)();
    metadata.set(CODE_KEY, this.code);
    if (this.hint) metadata.set(HINT_KEY, encodeURIComponent(this.hint));
    const err = new Error(this.message) as Error & Partial<grpcTypes.StatusObject>;
    err.code = ERRORS[this.code].status;
    err.details = this.message;
    err.metadata = metadata;
    return err;
  }
}

/**
 * Stands in a hint for the command that continues after the operator's fix: write "then
 * run ${RERUN}" where a hint means "run the same command again". It is filled in once, where
 * the error reaches the operator: with `cmmigrate run --plan FILE` in a run
 * (controller/run/context.ts stepError), with SAME_COMMAND_AGAIN for every other command
 * (controller/cli.ts, agent/cli.ts). An agent's hint crosses the wire unfilled.
 */
export const RERUN = '{rerun}';

/** What RERUN reads as outside a run. */
export const SAME_COMMAND_AGAIN = 'the same command again';

/** `hint` with RERUN filled in by `rerun`. */
export function fillRerun(hint: string, rerun: string): string {
  return hint.split(RERUN).join(rerun);
}

/** `err` with RERUN in its hint filled in by `rerun`; `err` itself when its hint has none. */
export function withRerun(err: CmError, rerun: string): CmError {
  if (!err.hint?.includes(RERUN)) return err;
  const filled = new CmError(err.code, err.message, { hint: fillRerun(err.hint, rerun), cause: err.cause, details: err.details, exitCode: err.exitCode });
  filled.stack = err.stack;
  return filled;
}

/** Anything thrown, as a CmError (unknown errors get `internal.unexpected`). */
export function asCmError(err: unknown, fallbackCode: ErrorCode = 'internal.unexpected'): CmError {
  if (err instanceof CmError) return err;
  const e = err as NodeJS.ErrnoException & { details?: string; metadata?: grpcTypes.Metadata };
  if (e && typeof e === 'object' && e.metadata !== null && typeof e.metadata === 'object' && e.metadata instanceof grpcRuntime().Metadata) return fromServiceError(e as unknown as grpcTypes.ServiceError);
  const message = e && typeof e.message === 'string' ? e.message : String(err);
  return new CmError(fallbackCode, message, { cause: err });
}

/**
 * A gRPC error from a peer, back as the CmError the peer raised. Errors of the
 * transport itself (peer down, TLS refused) get `connect.*` codes and a hint.
 */
export function fromServiceError(err: grpcTypes.ServiceError, peer?: string): CmError {
  const code = err.metadata?.get(CODE_KEY)?.[0];
  const hint = err.metadata?.get(HINT_KEY)?.[0];
  if (typeof code === 'string') {
    // A peer of another version may send a code this one does not know: it arrives as
    // internal.unexpected, with the peer's message, hint and code.
    const known = isErrorCode(code);
    return new CmError(known ? code : 'internal.unexpected', err.details || err.message, {
      hint: typeof hint === 'string' ? decodeURIComponent(hint) : undefined,
      cause: err,
      details: known ? undefined : { peerCode: code },
    });
  }
  const where = peer ? ` ${peer}` : ' the agent';
  switch (err.code) {
    case grpc.status.UNAVAILABLE:
      if (/ECONNRESET|Connection dropped|ended by the server|RST_STREAM/i.test(err.details ?? '')) {
        return new CmError('connect.lost', `lost the connection to${where}: ${err.details}`, {
          hint: `the agent may have stopped or restarted; check it (cmmigrate agents --plan FILE), then run ${RERUN}: it continues where it stopped`,
          cause: err,
        });
      }
      return new CmError('connect.unavailable', `cannot reach${where}: ${err.details}`, {
        hint: 'check that cmmigrate-agent runs there (cmmigrate agents --plan FILE), that the address in the plan is right, and that no firewall is in the way',
        cause: err,
      });
    case grpc.status.DEADLINE_EXCEEDED:
      return new CmError('connect.timeout', `${where.trim()} did not answer in time: ${err.details}`, {
        hint: `check the agent and the network between the hosts, then run ${RERUN}`,
        cause: err,
      });
    case grpc.status.CANCELLED:
      return new CmError('connect.cancelled', `the call to${where} was cancelled: ${err.details}`, { cause: err });
    case grpc.status.PERMISSION_DENIED:
    case grpc.status.UNAUTHENTICATED:
      return new CmError('auth.refused', `${where.trim()} refused the call: ${err.details}`, {
        hint: 'both sides must use certificates from this migration\'s CA (cmmigrate init); reinstall the agent\'s TLS material',
        cause: err,
      });
    default:
      return new CmError('connect.failed', `call to${where} failed: ${err.details || err.message}`, { cause: err });
  }
}
