/**
 * Verify, for `cmmigrate verify` and step 4 of `cmmigrate run`: both agents digest every root (paths, types, sizes, modes, owner
 * names, mtimes, contents, link targets, hard-link groups); the controller merges the two
 * listings and names the paths that differ. A quick verify compares the roots' digests
 * first and fetches the listings only when they differ.
 */
import { rootsForPhase, type VerifyBatch__Output } from '../../proto';
import { streamOf, type AgentHandle } from '../agent-client';
import { ownerRules, type Plan } from '../plan';
import type { Reporter } from '../report';
import { compareListings, type Comparison, type RootComparison } from '../tree-compare';

export interface VerifyOptions {
  /**
   * Take each regular file's SHA-256 from what the agents recorded where the record still
   * holds (agent/verify/digest-records.ts), reading only the rest: cost grows with what changed.
   */
  quick?: boolean;
  /** How many differing paths to list; default 20. */
  maxDiffs?: number;
  /** Ctrl-C: cancels both digests (step.interrupted). */
  signal?: AbortSignal;
}

export interface VerifyResult extends Comparison {
  ok: boolean;
  seconds: number;
  quick: boolean;
  /** Whether the record lines were compared (a full verify; a quick one whose root digests differ). */
  linesCompared: boolean;
  /** Over every root, both hosts together: file digests taken from records, files read (a quick verify: in its first round). */
  fromRecords: number;
  read: number;
}

/** Digests both trees through the connected agents and compares them entry by entry. */
export async function runVerify(plan: Plan, agents: { old: AgentHandle; new: AgentHandle }, opts: VerifyOptions, out: Reporter): Promise<VerifyResult> {
  const { old: oldA, new: newA } = agents;
  const started = Date.now();
  const quick = opts.quick === true;
  out.info(`verify${quick ? ' --quick' : ''}: digesting every root on ${plan.old.agent} (old) and ${plan.new.agent} (new)${quick ? ', content digests from the passes\' records where they still hold' : ''}`);
  const roots = rootsForPhase('final');
  const compare = async (digestsOnly: boolean): Promise<Comparison> => {
    const req = { scope: { mailboxes_dir: plan.mailboxesDir, roots }, owners: ownerRules(plan), quick, digests_only: digestsOnly };
    const calls = [oldA.client.Verify(req), newA.client.Verify(req)];
    // Errors surface through iteration; a call not being read must not crash the process.
    for (const c of calls) c.on('error', () => undefined);
    return compareListings(streamOf<VerifyBatch__Output>(oldA, calls[0], opts.signal), streamOf<VerifyBatch__Output>(newA, calls[1], opts.signal), opts.maxDiffs ?? 20, roots).finally(() => calls.forEach((c) => c.cancel()));
  };
  // A quick verify compares the roots' digests first: where they match, no record line
  // crosses to the controller, whose link to the hosts may be slow. Only when a root differs
  // are the lines fetched, to name the paths; the records the first round wrote make the
  // second one read nothing more.
  let cmp = await compare(quick);
  const counted = cmp;
  const linesCompared = !quick || !cmp.roots.every((r) => r.match);
  if (quick && linesCompared) {
    out.info('verify --quick: the root digests differ; comparing both hosts line by line to name the paths');
    cmp = await compare(false);
    // How each root was looked at is the first round's: the second starts from its digests.
    for (const r of cmp.roots) r.walk = counted.roots.find((c) => c.root === r.root)?.walk ?? r.walk;
  }
  const sum = (f: (r: (typeof cmp.roots)[number]) => { old: number; new: number }): number => counted.roots.reduce((n, r) => n + f(r).old + f(r).new, 0);
  const result: VerifyResult = {
    ...cmp,
    ok: cmp.differences === 0 && cmp.roots.every((r) => r.match),
    seconds: (Date.now() - started) / 1000,
    quick,
    linesCompared,
    fromRecords: sum((r) => r.fromRecords),
    read: sum((r) => r.read),
  };
  for (const r of cmp.roots) {
    const state = !r.present.old && !r.present.new ? 'absent on both' : r.match ? `match (${r.entries.old} entries, sha256 ${r.sha256.old.slice(0, 16)})` : `DIFFER (old ${r.entries.old} entries, new ${r.entries.new})`;
    out.info(`  ${r.root.padEnd(10)} ${state}${quick ? `; ${walkText(r.walk)}` : ''}`);
  }
  if (quick) out.info(`  files: ${result.fromRecords} digests from records, ${result.read} read (both hosts)`);
  if (!result.ok) {
    out.info(`${cmp.differences} differing path${cmp.differences === 1 ? '' : 's'}${cmp.differences > cmp.first.length ? `, the first ${cmp.first.length}` : ''}:`);
    for (const d of cmp.first) out.info(`  ${d.path}: ${d.what}`);
  }
  return result;
}

/**
 * Both agents digest every root, digests only, nothing compared: each keeps its lines as
 * the root's digest cache, from its change journal's position (agent/verify/verify-cache.ts),
 * so that a later quick verify looks again only at what changed after. `run` does this at
 * step 3 while mail is still on, so that step 4's verify inside the outage costs what the
 * outage changed. Resolves with each host's walk of the mailboxes root (for the log).
 */
export async function primeDigests(plan: Plan, agents: { old: AgentHandle; new: AgentHandle }, signal?: AbortSignal): Promise<{ seconds: number; read: number }> {
  const started = Date.now();
  const req = { scope: { mailboxes_dir: plan.mailboxesDir, roots: rootsForPhase('final') }, owners: ownerRules(plan), quick: true, digests_only: true };
  let read = 0;
  await Promise.all(
    [agents.old, agents.new].map(async (a) => {
      for await (const b of streamOf<VerifyBatch__Output>(a, a.client.Verify(req), signal)) if (b.root_done) read += Number(b.root_done.read);
    }),
  );
  return { seconds: (Date.now() - started) / 1000, read };
}

/**
 * How both agents looked at a root in a quick verify: only at what their change journals
 * said changed since the last digest, or in full, and why.
 */
function walkText(w: RootComparison['walk']): string {
  const one = (side: 'old' | 'new'): string => {
    const x = w[side];
    if (x.scoped) return `${side}: ${x.paths} changed path${x.paths === 1 ? '' : 's'} looked at`;
    return `${side}: full walk${x.reason ? ` (${x.reason})` : ''}`;
  };
  return `${one('old')}, ${one('new')}`;
}

/** `cmmigrate verify`'s ending: the result as an event and a verdict; false when the hosts differ. */
export function reportVerify(r: VerifyResult, planArg: string, out: Reporter): boolean {
  out.event({ ok: r.ok, differences: r.differences, first: r.first, roots: r.roots, seconds: r.seconds, ...(r.quick ? { quick: true, from_records: r.fromRecords, read: r.read, lines_compared: r.linesCompared } : {}) });
  if (r.ok) out.info(`verify: the new host matches the old host`);
  else out.info(`verify failed: the hosts differ; run \`cmmigrate sync --plan ${planArg} --phase final\`, then verify again`);
  return r.ok;
}
