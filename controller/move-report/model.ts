/**
 * The data of one move, as the report shows it: read from the run journal (an edge, so
 * validated with zod) plus optional facts that other parts of the controller record (the
 * DNS switch, the bridge, each pass, verify results, warnings, cmdeploy calls). What the
 * journal must have (hosts, steps) fails with a CmError naming the file; an optional part
 * that is missing or unreadable becomes `null` ("not recorded") and, when unreadable, a
 * note, so that one odd section never costs the operator the whole report.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { CmError } from '../../proto';

/** The steps in the order of the published procedure (the journal's ids). */
export const REPORT_STEP_IDS = ['preflight', '1', '2', '3', '4', '5', '6'] as const;

/**
 * Short titles for the timeline's labels; the run prints longer ones (controller/run/steps.ts),
 * too long for a row label beside a bar.
 */
export const STEP_SHORT_TITLES: Record<string, string> = {
  preflight: 'Preflight checks',
  '1': 'Initial sync (mail still on)',
  '2': 'Pre-configure the new host',
  '3': 'Disable mail on the old host',
  '4': 'Final sync, verify, postfix fix-ups',
  '5': 'Switch DNS to the new host',
  '6': 'Activate the new host',
};

const isoTime = z.string().refine((s) => !Number.isNaN(Date.parse(s)), { message: 'not a date and time' });
const count = z.number().finite().nonnegative();

const stepRecordSchema = z.object({
  state: z.enum(['pending', 'running', 'done', 'failed']),
  started_at: isoTime.optional(),
  ended_at: isoTime.optional(),
  seconds: count.optional(),
  bytes: count.optional(),
  files: count.optional(),
  marks: z.record(z.string(), z.string()).default({}),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  attempts: z.number().default(0),
});

/** What the report needs of the run journal (controller/run/journal.ts); other keys are ignored. */
export const journalCoreSchema = z.object({
  version: z.literal(1),
  mail_domain: z.string(),
  old_host: z.string(),
  new_host: z.string(),
  created_at: isoTime,
  updated_at: isoTime,
  steps: z.record(z.string(), stepRecordSchema),
  outage: z
    .object({ started_at: isoTime.optional(), ended_at: isoTime.optional(), dns_seconds: count.optional() })
    .default({}),
  rolled_back_at: isoTime.optional(),
});
/** The journal as the report reads it; the run's JournalData is assignable to it. */
export type JournalCore = z.input<typeof journalCoreSchema>;

const passSchema = z.object({
  phase: z.string(),
  bytes: count,
  files: count,
  seconds: count,
  started_at: isoTime.optional(),
});
const verifySchema = z.object({
  /** Entries compared on each side. */
  entries: count,
  /** Regular files whose digest came from what the passes recorded (quick verify). */
  from_records: count.optional(),
  /** Regular files read and hashed again. */
  read: count.optional(),
  /** How many paths differ (may exceed the listed ones). */
  differences: count.optional(),
  differing: z.array(z.union([z.string(), z.object({ path: z.string(), what: z.string().optional() })])).default([]),
  seconds: count.optional(),
  at: isoTime.optional(),
  /** A full verify that `run` starts after step 6 may not have finished. */
  state: z.enum(['done', 'pending', 'running', 'failed']).optional(),
});
const warningSchema = z.union([z.string(), z.object({ message: z.string(), at: isoTime.optional(), step: z.string().optional() })]);
const cmdeploySchema = z.object({
  command: z.string(),
  exit_status: z.number().int().nullable(),
  seconds: count,
  side: z.string().optional(),
  step: z.string().optional(),
  started_at: isoTime.optional(),
});
const minuteSchema = z.object({
  /** The minute's start: ISO 8601 text or milliseconds since the epoch. */
  minute: z.union([isoTime, z.number().finite()]),
  count,
});

/**
 * Optional facts beside the journal. Each may also sit at the journal's top level under the
 * same key (where later work may record it); the `extras` argument wins over the journal.
 */
export const EXTRA_PARTS = {
  /** When every authoritative server first answered with the new addresses. */
  dns_switched_at: isoTime,
  /** When the bridge on the old host started passing connections to the new host. */
  bridge_up_at: isoTime,
  bridged_per_minute: z.array(minuteSchema),
  passes: z.array(passSchema),
  verify: z.object({ quick: verifySchema.optional(), full: verifySchema.optional() }),
  warnings: z.array(warningSchema),
  cmdeploy_calls: z.array(cmdeploySchema),
} as const;
type ExtraKey = keyof typeof EXTRA_PARTS;

/** The optional facts a caller may pass to the report (all keys optional). */
export type ReportExtras = { [K in ExtraKey]?: z.input<(typeof EXTRA_PARTS)[K]> };

export type StepState = z.infer<typeof stepRecordSchema>['state'];
export interface ReportStep {
  id: string;
  title: string;
  state: StepState;
  started_at: string | null;
  ended_at: string | null;
  seconds: number | null;
  bytes: number | null;
  files: number | null;
  attempts: number;
  error: { code: string; message: string } | null;
}
export interface ReportVerify {
  entries: number;
  from_records: number | null;
  read: number | null;
  differences: number;
  differing: { path: string; what: string | null }[];
  seconds: number | null;
  at: string | null;
  state: 'done' | 'pending' | 'running' | 'failed';
}

/** The report's model; also the `--json` form. `null` means "not recorded". */
export interface MoveReport {
  format: 'cmmigrate-move-report/1';
  generated_at: string;
  /** The journal file the report was made from, when read from disk. */
  source: string | null;
  mail_domain: string;
  old_host: string;
  new_host: string;
  created_at: string;
  updated_at: string;
  outcome: 'complete' | 'in_progress' | 'failed' | 'rolled_back';
  rolled_back_at: string | null;
  steps: ReportStep[];
  outage: {
    started_at: string | null;
    ended_at: string | null;
    /** What ended it: the bridge on the old host, or step 6 on the new host. */
    ended_by: 'bridge' | 'step 6' | null;
    seconds: number | null;
    dns_wait_seconds: number | null;
  };
  dns_switched_at: string | null;
  bridge_up_at: string | null;
  bridged_per_minute: { minute: string; count: number }[] | null;
  passes: { phase: string; bytes: number; files: number; seconds: number; started_at: string | null }[] | null;
  verify: { quick: ReportVerify | null; full: ReportVerify | null } | null;
  warnings: { message: string; at: string | null; step: string | null }[] | null;
  cmdeploy_calls: { command: string; exit_status: number | null; seconds: number; side: string | null; step: string | null; started_at: string | null }[] | null;
  /** Optional parts that were present but unreadable, by key. */
  notes: string[];
}

const orNull = <T>(v: T | undefined): T | null => (v === undefined ? null : v);

function issueText(err: z.ZodError): string {
  const i = err.issues[0];
  return i ? `${i.path.length ? i.path.join('.') : '(top)'}: ${i.message}` : 'invalid';
}

function verifyOf(v: z.infer<typeof verifySchema> | undefined): ReportVerify | null {
  if (!v) return null;
  const differing = v.differing.map((d) => (typeof d === 'string' ? { path: d, what: null } : { path: d.path, what: orNull(d.what) }));
  return {
    entries: v.entries,
    from_records: orNull(v.from_records),
    read: orNull(v.read),
    differences: Math.max(v.differences ?? 0, differing.length),
    differing,
    seconds: orNull(v.seconds),
    at: orNull(v.at),
    state: v.state ?? 'done',
  };
}

const seconds = (from: string, to: string): number => (Date.parse(to) - Date.parse(from)) / 1000;

/**
 * Builds the report's model from a journal's parsed JSON and optional extras. `source` names
 * the journal file in errors. Throws `report.journal_invalid` when the journal's core is not
 * a cmmigrate journal.
 */
export function buildMoveReport(journal: unknown, extras: ReportExtras = {}, opts: { source?: string; now?: Date } = {}): MoveReport {
  const where = opts.source ?? 'the run journal';
  const core = journalCoreSchema.safeParse(journal);
  if (!core.success) {
    throw new CmError('report.journal_invalid', `${where} is not a cmmigrate run journal (${issueText(core.error)})`, {
      hint: `make the report from the journal.json in the plan's state_dir: cmmigrate report --plan <plan.toml>`,
    });
  }
  const j = core.data;
  const top = (journal ?? {}) as Record<string, unknown>;
  const notes: string[] = [];
  const part = <K extends ExtraKey>(key: K): z.infer<(typeof EXTRA_PARTS)[K]> | undefined => {
    const given = (extras as Record<string, unknown>)[key];
    const raw = given !== undefined ? given : top[key];
    if (raw === undefined || raw === null) return undefined;
    // The journal starts every part empty: nothing recorded yet.
    if (given === undefined && typeof raw === 'object' && Object.keys(raw).length === 0) return undefined;
    const r = EXTRA_PARTS[key].safeParse(raw);
    if (!r.success) {
      notes.push(`${key} could not be read (${issueText(r.error)}); shown as not recorded`);
      return undefined;
    }
    return r.data as z.infer<(typeof EXTRA_PARTS)[K]>;
  };

  const steps: ReportStep[] = REPORT_STEP_IDS.map((id) => {
    const s = j.steps[id];
    return {
      id,
      title: STEP_SHORT_TITLES[id]!,
      state: s?.state ?? 'pending',
      started_at: orNull(s?.started_at),
      ended_at: orNull(s?.ended_at),
      seconds: s?.seconds ?? (s?.started_at && s.ended_at ? seconds(s.started_at, s.ended_at) : null),
      bytes: orNull(s?.bytes),
      files: orNull(s?.files),
      attempts: s?.attempts ?? 0,
      error: orNull(s?.error),
    };
  });
  const byId = (id: string): ReportStep => steps.find((s) => s.id === id)!;

  const dnsSwitched = part('dns_switched_at');
  const bridgeUp = part('bridge_up_at');
  const outageStart = j.outage.started_at ?? byId('3').started_at ?? undefined;
  const step6End = j.outage.ended_at ?? (byId('6').state === 'done' ? byId('6').ended_at ?? undefined : undefined);
  // The outage ends when clients reach a serving host again: with the bridge, when it is up
  // (clients still resolve the old address); without it, when step 6 put mail on.
  let outageEnd: string | undefined;
  let endedBy: 'bridge' | 'step 6' | null = null;
  if (outageStart && bridgeUp && Date.parse(bridgeUp) >= Date.parse(outageStart)) {
    outageEnd = bridgeUp;
    endedBy = 'bridge';
  } else if (outageStart && step6End) {
    outageEnd = step6End;
    endedBy = 'step 6';
  }

  const perMinute = part('bridged_per_minute')
    ?.map((m) => ({ minute: new Date(m.minute).toISOString(), count: m.count }))
    .sort((a, b) => Date.parse(a.minute) - Date.parse(b.minute));
  const verify = part('verify');
  const warnings = part('warnings')?.map((w) => (typeof w === 'string' ? { message: w, at: null, step: null } : { message: w.message, at: orNull(w.at), step: orNull(w.step) }));

  const outcome: MoveReport['outcome'] = j.rolled_back_at
    ? 'rolled_back'
    : steps.some((s) => s.state === 'failed')
      ? 'failed'
      : steps.every((s) => s.state === 'done')
        ? 'complete'
        : 'in_progress';

  return {
    format: 'cmmigrate-move-report/1',
    generated_at: (opts.now ?? new Date()).toISOString(),
    source: opts.source ?? null,
    mail_domain: j.mail_domain,
    old_host: j.old_host,
    new_host: j.new_host,
    created_at: j.created_at,
    updated_at: j.updated_at,
    outcome,
    rolled_back_at: orNull(j.rolled_back_at),
    steps,
    outage: {
      started_at: orNull(outageStart),
      ended_at: orNull(outageEnd),
      ended_by: endedBy,
      seconds: outageStart && outageEnd ? seconds(outageStart, outageEnd) : null,
      dns_wait_seconds: orNull(j.outage.dns_seconds),
    },
    dns_switched_at: orNull(dnsSwitched),
    bridge_up_at: orNull(bridgeUp),
    bridged_per_minute: orNull(perMinute),
    passes: orNull(part('passes')?.map((p) => ({ ...p, started_at: orNull(p.started_at) }))),
    verify: verify ? { quick: verifyOf(verify.quick), full: verifyOf(verify.full) } : null,
    warnings: orNull(warnings),
    cmdeploy_calls: orNull(
      part('cmdeploy_calls')?.map((c) => ({ command: c.command, exit_status: c.exit_status, seconds: c.seconds, side: orNull(c.side), step: orNull(c.step), started_at: orNull(c.started_at) })),
    ),
    notes,
  };
}

/**
 * Reads `<stateDir>/journal.json` and builds the report's model. Throws
 * `report.no_journal`, `report.journal_unreadable` or `report.journal_invalid`, each naming the file.
 */
export async function loadMoveReport(stateDir: string, extras: ReportExtras = {}, now?: Date): Promise<MoveReport> {
  const file = path.join(stateDir, 'journal.json');
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CmError('report.no_journal', `there is no run journal at ${file}: nothing to report yet`, {
        hint: `start the move with cmmigrate run --plan <plan.toml> (or check state_dir in the plan)`,
      });
    }
    throw new CmError('report.journal_unreadable', `cannot read the run journal ${file}: ${(err as Error).message}`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CmError('report.journal_invalid', `the run journal ${file} is not valid JSON`, {
      hint: `it is written atomically, so something else changed it: restore it from a backup`,
      cause: err,
    });
  }
  return buildMoveReport(raw, extras, { source: file, now });
}
