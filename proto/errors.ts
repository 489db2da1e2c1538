/**
 * The one error type of cmmigrate. Every failure that a person may see carries a stable
 * dotted code (`transfer.digest_mismatch`), a message that names the path, host or flag,
 * and a hint with the next thing to do. Agents map it to a gRPC status with metadata;
 * the controller maps it back, so a user never sees a bare "13 INTERNAL".
 */
import * as grpc from '@grpc/grpc-js';

/** Exit codes of the controller, documented in `cmmigrate --help` and the README. */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  precondition: 3,
  interrupted: 130,
} as const;

const CODE_KEY = 'cmm-code';
const HINT_KEY = 'cmm-hint';

/** Which gRPC status a code family travels as. */
function statusFor(code: string): grpc.status {
  if (code.startsWith('auth.')) return grpc.status.PERMISSION_DENIED;
  if (code.startsWith('usage.') || code.startsWith('plan.')) return grpc.status.INVALID_ARGUMENT;
  if (code.startsWith('precondition.') || code === 'transfer.missing_owners') {
    return grpc.status.FAILED_PRECONDITION;
  }
  if (code.startsWith('agent.path_')) return grpc.status.PERMISSION_DENIED;
  if (code === 'agent.op_not_allowed' || code === 'agent.unit_not_allowed') return grpc.status.INVALID_ARGUMENT;
  if (code === 'host.command_missing') return grpc.status.FAILED_PRECONDITION;
  if (code.startsWith('transfer.') || code.startsWith('wire.')) return grpc.status.DATA_LOSS;
  if (code.startsWith('connect.')) return grpc.status.UNAVAILABLE;
  return grpc.status.INTERNAL;
}

export interface CmErrorOptions {
  hint?: string;
  cause?: unknown;
  /** Extra structured facts for logs and --json (never file contents or secrets). */
  details?: Record<string, unknown>;
  /** Exit code the controller uses when this error ends a command. */
  exitCode?: number;
}

export class CmError extends Error {
  readonly code: string;
  readonly hint?: string;
  readonly details?: Record<string, unknown>;
  readonly exitCode: number;

  constructor(code: string, message: string, opts: CmErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CmError';
    this.code = code;
    this.hint = opts.hint;
    this.details = opts.details;
    this.exitCode =
      opts.exitCode ??
      (code.startsWith('usage.') || code.startsWith('plan.')
        ? ExitCode.usage
        : code.startsWith('precondition.') || code === 'transfer.missing_owners'
          ? ExitCode.precondition
          : ExitCode.failed);
  }

  /** This error as a gRPC status object, ready for `callback(err)` or `call.emit('error', err)`. */
  toServiceError(): Partial<grpc.StatusObject> & Error {
    const metadata = new grpc.Metadata();
    metadata.set(CODE_KEY, this.code);
    if (this.hint) metadata.set(HINT_KEY, encodeURIComponent(this.hint));
    const err = new Error(this.message) as Error & Partial<grpc.StatusObject>;
    err.code = statusFor(this.code);
    err.details = this.message;
    err.metadata = metadata;
    return err;
  }
}

/** Anything thrown, as a CmError (unknown errors get `internal.unexpected`). */
export function asCmError(err: unknown, fallbackCode = 'internal.unexpected'): CmError {
  if (err instanceof CmError) return err;
  const e = err as NodeJS.ErrnoException & { details?: string; metadata?: grpc.Metadata };
  if (e && typeof e === 'object' && e.metadata instanceof grpc.Metadata) return fromServiceError(e as unknown as grpc.ServiceError);
  const message = e && typeof e.message === 'string' ? e.message : String(err);
  return new CmError(fallbackCode, message, { cause: err });
}

/**
 * A gRPC error from a peer, back as the CmError the peer raised. Errors of the
 * transport itself (peer down, TLS refused) get `connect.*` codes and a hint.
 */
export function fromServiceError(err: grpc.ServiceError, peer?: string): CmError {
  const code = err.metadata?.get(CODE_KEY)?.[0];
  const hint = err.metadata?.get(HINT_KEY)?.[0];
  if (typeof code === 'string') {
    return new CmError(code, err.details || err.message, {
      hint: typeof hint === 'string' ? decodeURIComponent(hint) : undefined,
      cause: err,
    });
  }
  const where = peer ? ` ${peer}` : ' the agent';
  switch (err.code) {
    case grpc.status.UNAVAILABLE:
      if (/ECONNRESET|Connection dropped|ended by the server|RST_STREAM/i.test(err.details ?? '')) {
        return new CmError('connect.lost', `lost the connection to${where}: ${err.details}`, {
          hint: 'the agent may have stopped or restarted; check it (cmmigrate agents --plan FILE), then run the same command again: it continues where it stopped',
          cause: err,
        });
      }
      return new CmError('connect.unavailable', `cannot reach${where}: ${err.details}`, {
        hint: 'check that cmmigrate-agent runs there (cmmigrate agents --plan FILE), that the address in the plan is right, and that no firewall is in the way',
        cause: err,
      });
    case grpc.status.DEADLINE_EXCEEDED:
      return new CmError('connect.timeout', `${where.trim()} did not answer in time: ${err.details}`, {
        hint: 'check the agent and the network between the hosts, then run the same command again',
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
