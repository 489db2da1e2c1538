/**
 * The relay's units around the steps, as upstream deploys them (relay/upstream.ts): what
 * step 3 stops on the old host after `--disable-mail`, waiting for a oneshot run in
 * progress; what stays stopped on the new host from step 2 to step 6; the relay's shape
 * read from the chatmail.ini cmdeploy reads.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CmError } from '../../proto';
import { runningUnits } from '../host-ops';
import { readChatmailIni } from '../relay/chatmail-ini';
import { relayShapeOf } from '../relay/shape';
import type { TlsSetup } from '../relay/tls-mode';
import { unitsInertOnNewHost, unitsToStopAtStep3, type RelayShape } from '../relay/upstream';
import { hostLabel, stopUnits, type ActionContext } from './actions';

export interface RelayFacts {
  shape: RelayShape;
  tls: TlsSetup;
  params: Record<string, string>;
  file: string;
}

const cache = new WeakMap<object, Promise<RelayFacts>>();

/** The relay's shape from the ini cmdeploy will read (`$CHATMAIL_INI`, else the checkout's chatmail.ini); read once per context. */
export function relayFacts(ctx: Pick<ActionContext, 'relayDir' | 'rerun'>): Promise<RelayFacts> {
  let p = cache.get(ctx);
  if (!p) {
    p = (async () => {
      const ini = await readChatmailIni(ctx.relayDir, process.env);
      if (!ini) {
        throw new CmError('precondition.no_chatmail_ini', `${ctx.relayDir}/chatmail.ini does not exist: cmdeploy reads the relay's configuration from it`, {
          hint: `copy the chatmail.ini the relay was deployed with into ${ctx.relayDir}, then run ${ctx.rerun}`,
        });
      }
      return { ...relayShapeOf(ini.params, ini.file), params: ini.params, file: ini.file };
    })();
    cache.set(ctx, p);
  }
  return p;
}

/** How long step 3 waits for a oneshot run in progress (chatmail-expire deletes in bulk). */
export const ONESHOT_WAIT_MS = 10 * 60_000;

/**
 * Step 3, after `--disable-mail`: stops what upstream's full deploy leaves running that can
 * still write a carried root, timers first, then the oneshots they start (`systemctl stop`
 * of a run in progress; then wait until it is inactive or failed: `activating` is still a
 * run), then daemons. chatmail/relay ChatmailVenvDeployer.activate asks chatmail-expire.service
 * running=False, which pyinfra does not apply to a run in progress (SubState `start`).
 */
export async function stopWritersAtStep3(ctx: ActionContext, shape: RelayShape, waitMs = ONESHOT_WAIT_MS): Promise<string[]> {
  const stops = unitsToStopAtStep3(shape);
  const units = stops.map((s) => s.unit);
  await stopUnits(ctx, 'old', units, "upstream's --disable-mail leaves them running, and they can still write what the final sync carries");
  const oneshots = stops.filter((s) => s.how === 'stop-and-wait').map((s) => s.unit);
  const deadline = Date.now() + waitMs;
  for (;;) {
    const left = runningUnits(await ctx.hosts.old.serviceStates(oneshots), oneshots);
    if (left.length === 0) break;
    if (Date.now() > deadline) {
      throw new CmError('step.service_still_active', `${left.join(', ')} still run${left.length === 1 ? 's' : ''} on ${hostLabel(ctx.plan, 'old')} after systemctl stop and ${Math.round(waitMs / 1000)} s`, {
        hint: `wait for it (systemctl status ${oneshots.join(' ')} on ${ctx.plan.old.host}) or stop it by hand, then run ${ctx.rerun}`,
      });
    }
    ctx.out.info(`  waiting for ${left.join(', ')} to end on ${hostLabel(ctx.plan, 'old')}`);
    await sleep(1000, undefined, { signal: ctx.signal }).catch(() => undefined);
    if (ctx.signal?.aborted) throw new CmError('step.interrupted', `interrupted while waiting for ${left.join(', ')} on ${hostLabel(ctx.plan, 'old')}`, { hint: `run ${ctx.rerun}` });
  }
  return units;
}

/** The units that must not run on the new host between step 2 and step 6 (they write carried roots). */
export function inertUnits(shape: RelayShape): string[] {
  return unitsInertOnNewHost(shape).map((u) => u.unit);
}

/**
 * Keeps the new host inert: stops what runs of `inertUnits` (after step 2 always; before
 * steps 4 and 6 only what runs again, with a warning).
 */
export async function keepNewHostInert(ctx: ActionContext & { warn?(m: string): void }, shape: RelayShape, when: 'after-step-2' | 'before-step-4' | 'before-step-6'): Promise<void> {
  const units = inertUnits(shape);
  if (when === 'after-step-2') {
    await stopUnits(ctx, 'new', units, 'they write what the final sync carries; nothing may run before step 6');
    return;
  }
  const running = runningUnits(await ctx.hosts.new.serviceStates(units), units);
  if (running.length === 0) return;
  const names = running.map((r) => r.replace(/ \(.*\)$/, ''));
  ctx.warn?.(`${running.join(', ')} ran on the new host before step 6; stopping them again`);
  await stopUnits(ctx, 'new', names, 'they must not run before step 6');
}
