/**
 * The run's journal: which steps of the migration are done, when, how long they took and
 * what they moved, and which external effects inside a step already happened (so a rerun
 * after a crash does not repeat them). One JSON file in the plan's state dir, written to a
 * temp file, flushed and renamed, so a kill at any moment leaves the old or the new
 * version, never a torn one.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { CmError } from '../../proto';
import { writeFileAtomicSync } from '../atomic-file';

/** The steps in the order they run. */
export const STEP_IDS = ['preflight', '1', '2', '3', '4', '5', '6'] as const;
export type StepId = (typeof STEP_IDS)[number];

/** `Preflight` or `Step 3/6`, for people. */
export function stepLabel(id: StepId): string {
  return id === 'preflight' ? 'Preflight' : `Step ${id}/6`;
}

export type StepState = 'pending' | 'running' | 'done' | 'failed';

const stepRecord = z.object({
  state: z.enum(['pending', 'running', 'done', 'failed']),
  started_at: z.string().optional(),
  ended_at: z.string().optional(),
  seconds: z.number().optional(),
  /** Bytes of file content this step moved (steps 1 and 4). */
  bytes: z.number().optional(),
  files: z.number().optional(),
  /** External effects already performed within the step, by name. */
  marks: z.record(z.string(), z.string()).default({}),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  /** How often it was started. */
  attempts: z.number().default(0),
});
export type StepRecord = z.infer<typeof stepRecord>;

const passRecord = z.object({
  step: z.string(),
  phase: z.enum(['initial', 'catch-up', 'final']),
  started_at: z.string(),
  seconds: z.number(),
  bytes: z.number(),
  files: z.number(),
});
export type PassRecord = z.infer<typeof passRecord>;

const verifyRecord = z.object({
  /** pending: to run (the full verify after step 6, until it ran to its end). */
  state: z.enum(['pending', 'running', 'done', 'failed']),
  at: z.string().optional(),
  seconds: z.number().optional(),
  entries: z.number().optional(),
  from_records: z.number().optional(),
  read: z.number().optional(),
  differences: z.number().optional(),
  differing: z.array(z.object({ path: z.string(), what: z.string() })).default([]),
});
export type VerifyRecord = z.infer<typeof verifyRecord>;

const journalSchema = z.object({
  version: z.literal(1),
  mail_domain: z.string(),
  old_host: z.string(),
  new_host: z.string(),
  created_at: z.string(),
  updated_at: z.string(),
  steps: z.record(z.string(), stepRecord),
  /** From the start of step 3 (mail off) to the end of step 6 (mail on). */
  outage: z.object({ started_at: z.string().optional(), ended_at: z.string().optional(), dns_seconds: z.number().optional() }).default({}),
  /** Set by rollback: mail runs on the old host again. */
  rolled_back_at: z.string().optional(),
  /** Every pass the run made, in order (initial, catch-up, final): what the report shows. */
  passes: z.array(passRecord).default([]),
  /** Step 4's quick verify, and the full verify that runs once mail is back on. */
  verify: z.object({ quick: verifyRecord.optional(), full: verifyRecord.optional() }).default({}),
  /** The order the steps run in: the published one, or with --bridge 6 before 5 (set once, kept for reruns). */
  order: z.array(z.string()).optional(),
  /** When every authoritative server answered with the new addresses (step 5). */
  dns_switched_at: z.string().optional(),
  /** When the old host's bridge passed connections to the new host (run --bridge). */
  bridge_up_at: z.string().optional(),
  /** The bridge the run started: what it bridges, the old TTL, the units it stopped on the old host. */
  bridge: z
    .object({
      listen: z.array(z.string()),
      target: z.string(),
      ports: z.array(z.number()),
      old_ttl: z.number().optional(),
      stopped_units: z.array(z.string()).default([]),
      stopped_at: z.string().optional(),
    })
    .optional(),
  /** What the run warned about, for the report. */
  warnings: z.array(z.object({ message: z.string(), at: z.string().optional(), step: z.string().optional() })).optional(),
  /** The old host's ACME account URL (acmetool account-url at preflight), for the CAA check after step 6. */
  acme_account_url: z.string().optional(),
  /**
   * The external TLS files (tls_external_cert_and_key) step 2 wrote on the new host, by path:
   * a rerun replaces only a file with this digest (controller/run/external-tls.ts).
   */
  external_tls: z
    .array(z.object({ path: z.string(), sha256: z.string(), resolved: z.string().optional(), result: z.string(), at: z.string() }))
    .optional(),
  /** Every cmdeploy call of the run: command, exit status, seconds. */
  cmdeploy_calls: z
    .array(z.object({ command: z.string(), exit_status: z.number().int().nullable(), seconds: z.number(), side: z.string().optional(), step: z.string().optional(), started_at: z.string().optional() }))
    .optional(),
});
export type JournalData = z.infer<typeof journalSchema>;

export const JOURNAL_FILE = 'journal.json';

export function journalPath(stateDir: string): string {
  return path.join(stateDir, JOURNAL_FILE);
}

function fresh(ids: { mailDomain: string; oldHost: string; newHost: string }): JournalData {
  const now = new Date().toISOString();
  return {
    version: 1,
    mail_domain: ids.mailDomain,
    old_host: ids.oldHost,
    new_host: ids.newHost,
    created_at: now,
    updated_at: now,
    steps: Object.fromEntries(STEP_IDS.map((id) => [id, { state: 'pending', marks: {}, attempts: 0 }])),
    outage: {},
    passes: [],
    verify: {},
  };
}

/** The journal of one migration; every change is saved before the method returns. */
export class Journal {
  private constructor(
    readonly file: string,
    public data: JournalData,
    /** False for a dry run's view: nothing is written. */
    private readonly persist = true,
  ) {}

  /** A journal of pending steps that is never written (a dry run before the first run). */
  static inMemory(ids: { mailDomain: string; oldHost: string; newHost: string }): Journal {
    return new Journal('', fresh(ids), false);
  }

  /** Reads the journal, or undefined when there is none. */
  static async read(stateDir: string): Promise<Journal | undefined> {
    const file = journalPath(stateDir);
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new CmError('journal.unreadable', `cannot read the run journal ${file}: ${(err as Error).message}`, { cause: err });
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new CmError('journal.corrupt', `the run journal ${file} is not valid JSON`, {
        hint: `it is written atomically, so something else changed it: restore it, or move it away to start the run's bookkeeping afresh (every step checks its own effect)`,
        cause: err,
      });
    }
    const parsed = journalSchema.safeParse(raw);
    if (!parsed.success) {
      throw new CmError('journal.corrupt', `the run journal ${file} is not a cmmigrate journal: ${parsed.error.issues[0]?.path.join('.')} ${parsed.error.issues[0]?.message}`, {
        hint: `restore it, or move it away to start the run's bookkeeping afresh`,
      });
    }
    for (const id of STEP_IDS) parsed.data.steps[id] ??= { state: 'pending', marks: {}, attempts: 0 };
    return new Journal(file, parsed.data);
  }

  /** Reads the journal, or starts one for this plan; refuses one of another migration. */
  static async open(stateDir: string, ids: { mailDomain: string; oldHost: string; newHost: string }): Promise<Journal> {
    const j = await Journal.read(stateDir);
    if (j) {
      const d = j.data;
      if (d.mail_domain !== ids.mailDomain || d.old_host !== ids.oldHost || d.new_host !== ids.newHost) {
        throw new CmError(
          'journal.other_migration',
          `the run journal ${j.file} belongs to the move of ${d.mail_domain} from ${d.old_host} to ${d.new_host}, not of ${ids.mailDomain} from ${ids.oldHost} to ${ids.newHost}`,
          { hint: `use a plan with its own state_dir for another migration, or move ${j.file} away` },
        );
      }
      return j;
    }
    await fsp.mkdir(stateDir, { recursive: true, mode: 0o700 });
    const created = new Journal(journalPath(stateDir), fresh(ids));
    created.save();
    return created;
  }

  step(id: StepId): StepRecord {
    return this.data.steps[id]!;
  }

  isDone(id: StepId): boolean {
    return this.step(id).state === 'done';
  }

  start(id: StepId): void {
    const s = this.step(id);
    s.state = 'running';
    s.started_at = new Date().toISOString();
    s.ended_at = undefined;
    s.seconds = undefined;
    s.error = undefined;
    s.attempts += 1;
    this.save();
  }

  finish(id: StepId, facts: { bytes?: number; files?: number } = {}): void {
    const s = this.step(id);
    s.state = 'done';
    s.ended_at = new Date().toISOString();
    s.seconds = s.started_at ? (Date.parse(s.ended_at) - Date.parse(s.started_at)) / 1000 : undefined;
    if (facts.bytes !== undefined) s.bytes = facts.bytes;
    if (facts.files !== undefined) s.files = facts.files;
    this.save();
  }

  fail(id: StepId, err: { code: string; message: string }): void {
    const s = this.step(id);
    s.state = 'failed';
    s.ended_at = new Date().toISOString();
    s.seconds = s.started_at ? (Date.parse(s.ended_at) - Date.parse(s.started_at)) / 1000 : undefined;
    s.error = { code: err.code, message: err.message };
    this.save();
  }

  /** Back to pending, marks dropped (rollback). */
  reset(id: StepId): void {
    this.data.steps[id] = { state: 'pending', marks: {}, attempts: this.step(id).attempts };
    this.save();
  }

  mark(id: StepId, name: string): void {
    this.step(id).marks[name] = new Date().toISOString();
    this.save();
  }

  hasMark(id: StepId, name: string): boolean {
    return this.step(id).marks[name] !== undefined;
  }

  /** Changes the data and saves it. */
  update(fn: (d: JournalData) => void): void {
    fn(this.data);
    this.save();
  }

  /** Saved whole (temp file, fsync, rename); synchronous, so that no two saves interleave. */
  save(): void {
    if (!this.persist) return;
    this.data.updated_at = new Date().toISOString();
    writeFileAtomicSync(this.file, JSON.stringify(this.data, null, 2) + '\n', 0o600);
  }
}
