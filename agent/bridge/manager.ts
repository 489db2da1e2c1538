/**
 * The one bridge an agent may run, for the gRPC handlers to call: start (idempotent for
 * the same request), stop, status, and resume at agent start-up. A resume that fails
 * (a port taken again meanwhile) does not stop the agent: the failure is kept and shown
 * by status(), so the controller can still reach the agent to stop or restart the bridge.
 */
import { CmError } from '../../proto/errors';
import { resumeBridge, startBridge, type Bridge, type BridgeOptions, type BridgeRequest, type BridgeStatus } from './bridge';
import { RELAY_PORT_NUMBERS } from './ports';
import { checkConfig, clearState, type BridgeConfig } from './state';

/** status() of a manager: the bridge's status when one runs. */
export type ManagedStatus =
  | ({ running: true } & BridgeStatus)
  | {
      running: false;
      /** Why the bridge that ran before the agent restarted did not come back. */
      resumeError?: { code: string; message: string };
      /** stop(): the counts at the moment the bridge stopped. */
      last?: BridgeStatus;
    };

function sameConfig(a: BridgeConfig, b: BridgeConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Holds at most one bridge; every method is safe to call in any order. */
export class BridgeManager {
  private bridge: Bridge | null = null;
  private resumeError?: CmError;
  private busy: Promise<unknown> = Promise.resolve();

  /** `opts.stateDir` is where the state file lives; `opts.signal` is the agent's shutdown. */
  constructor(private readonly opts: BridgeOptions & { stateDir: string }) {}

  /** One operation at a time: a stop never races a start. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.busy.then(fn, fn);
    this.busy = run.catch(() => undefined);
    return run;
  }

  /** At agent start-up: takes over a bridge that was running before a restart. Never throws. */
  resume(): Promise<void> {
    return this.serial(async () => {
      try {
        this.bridge = await resumeBridge(this.opts.stateDir, this.opts);
      } catch (err) {
        this.resumeError = err instanceof CmError ? err : new CmError('bridge.resume_failed', `the bridge could not resume: ${(err as Error).message}`, { cause: err });
        this.opts.onWarning?.({ code: this.resumeError.code, message: this.resumeError.message });
      }
    });
  }

  /**
   * Starts the bridge (empty `ports`: the relay's ports). The same request while it runs
   * returns its status; a different one is refused with bridge.already_running.
   */
  start(request: BridgeRequest): Promise<ManagedStatus> {
    return this.serial(async () => {
      const full = { ...request, ports: request.ports.length ? request.ports : [...RELAY_PORT_NUMBERS] };
      if (this.bridge) {
        if (sameConfig(this.bridge.config, checkConfig(full))) return { running: true as const, ...this.bridge.status() };
        throw new CmError('bridge.already_running', `a bridge to ${this.bridge.config.target} is already running with other addresses, ports or limits`, {
          hint: 'stop it first (cmmigrate bridge stop --plan F), then start the bridge again',
        });
      }
      this.bridge = await startBridge(full, this.opts);
      this.resumeError = undefined;
      return { running: true as const, ...this.bridge.status() };
    });
  }

  /** Stops the bridge and removes its state (also a state a failed resume left behind). */
  stop(): Promise<ManagedStatus> {
    return this.serial(async () => {
      const b = this.bridge;
      this.bridge = null;
      this.resumeError = undefined;
      if (b) {
        const last = b.status();
        await b.stop();
        return { running: false as const, last };
      }
      clearState(this.opts.stateDir);
      return { running: false as const };
    });
  }

  /**
   * The agent is going away: the bridge closes and keeps its state file with its counters,
   * so the next start resumes it. Resolves once that is written (the process may exit then).
   */
  shutdown(): Promise<void> {
    return this.serial(async () => {
      const b = this.bridge;
      this.bridge = null;
      await b?.stop({ keepState: true });
    });
  }

  status(): ManagedStatus {
    if (this.bridge) return { running: true, ...this.bridge.status() };
    return this.resumeError ? { running: false, resumeError: { code: this.resumeError.code, message: this.resumeError.message } } : { running: false };
  }
}
