/**
 * Every request that arrives over the wire, checked with zod before anything acts on it:
 * a bad one is refused as `usage.bad_request`, naming the field.
 */
import { z } from 'zod';
import { CmError, ExternalTlsWriteSchema, HOST_OP_MAX_UNITS, ROOTS, rootsForPhase, type ExternalTlsWrite, type Phase, type RootName } from '../proto';
import type { OwnerNames } from './receive/pass';

const NAME = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/);
const ScopeSchema = z.object({
  mailboxes_dir: z.string().max(4096),
  roots: z.array(z.string().max(32)).max(16),
});
const OwnerSchema = z.object({ root: z.string().max(32), user: NAME, group: NAME });
const PhaseSchema = z.enum(['INITIAL', 'FINAL']);
const MTIME_NS = z.string().regex(/^\d{1,21}$/);

/** Pull (controller → receiving agent). */
export const PullSchema = z.object({
  source: z.string().min(1).max(300),
  phase: PhaseSchema,
  scope: ScopeSchema,
  owners: z.array(OwnerSchema).max(16),
  dry_run: z.boolean(),
  max_delete: z.string().regex(/^-?\d{1,18}$/),
  no_journal: z.boolean().default(false),
});
/** Verify (controller → either agent). */
export const VerifySchema = z.object({ scope: ScopeSchema, owners: z.array(OwnerSchema).max(16), quick: z.boolean().optional(), digests_only: z.boolean().optional() });
/** Paths one journal request may name per root; more, and the receiver asks for a full walk. */
export const MAX_SCOPE_PATHS = 16_384;
const ScopedPathSchema = z.object({ path: z.string().min(1).max(4096), scope: z.enum(['entry', 'children', 'subtree']), content: z.boolean().default(false) });
const JournalPositionSchema = z.object({ epoch: z.string().max(64), seq: z.string().regex(/^\d{1,16}$/) });
/** A receiver's journal request for one root of a List (issue 25). */
const RootJournalSchema = z.object({
  root: z.string().max(32),
  since: JournalPositionSchema.nullable(),
  changed: z.array(ScopedPathSchema).max(MAX_SCOPE_PATHS),
  sender_identity: z.string().max(64),
  last_try: z.boolean().default(false),
});
/** List (receiving agent → sending agent). */
export const ListSchema = z.object({ phase: PhaseSchema, scope: ScopeSchema, journal: z.array(RootJournalSchema).max(16).default([]) });
export type RootJournalChecked = z.infer<typeof RootJournalSchema>;
/** The first message of a Fetch: the pass it belongs to, no items yet. */
export const FetchFirstSchema = z.object({ phase: PhaseSchema, scope: ScopeSchema, items: z.array(z.unknown()).max(0) });
/** Every later message of a Fetch: the wanted files. */
export const FetchItemsSchema = z.object({
  items: z
    .array(z.object({ path: z.string().min(1).max(4096), size: z.string().regex(/^\d{1,20}$/), mtime_ns: MTIME_NS }))
    .min(1)
    .max(4096),
});
/** HostOp (controller → agent). */
export const HostOpSchema = z.object({
  op: z.string().max(64),
  units: z.array(z.string().max(256)).max(HOST_OP_MAX_UNITS, `at most ${HOST_OP_MAX_UNITS} units per call`),
  input: z.string().max(256 * 1024).default(''),
});

const U32 = z.number().int().min(0).max(0xffffffff);
/** BridgeStart (controller → old agent); 0 in a limit means the default. */
export const BridgeStartSchema = z.object({
  listen: z.array(z.string().min(1).max(64)).min(1).max(16),
  ports: z.array(z.number().int().min(1).max(65535)).max(64),
  target: z.string().min(1).max(64),
  limits: z
    .object({
      max_connections: U32,
      max_per_source: U32,
      per_port: z.record(z.string().regex(/^\d{1,5}$/), U32),
      per_port_set: z.boolean(),
      idle_timeout_ms: U32,
      connect_timeout_ms: U32,
      high_water_mark: U32,
    })
    .nullable()
    .optional(),
});

export type BridgeStartChecked = z.infer<typeof BridgeStartSchema>;
export type PullRequestChecked = z.infer<typeof PullSchema>;
export type ScopeChecked = z.infer<typeof ScopeSchema>;

/** `req` checked against `schema`, or `usage.bad_request` naming the first bad field. */
export function parse<T>(schema: z.ZodType<T>, req: unknown, what: string): T {
  const r = schema.safeParse(req);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new CmError('usage.bad_request', `bad ${what} request: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return r.data;
}

/** The wire's phase name as the agent's. */
export const phaseOf = (p: 'INITIAL' | 'FINAL'): Phase => (p === 'INITIAL' ? 'initial' : 'final');

/** The owner rules of a request, by root; an unknown root is refused. */
export function ownersMap(rules: { root: string; user: string; group: string }[]): Partial<Record<RootName, OwnerNames>> {
  const out: Partial<Record<RootName, OwnerNames>> = {};
  for (const r of rules) {
    if (!ROOTS.some((x) => x.name === r.root)) throw new CmError('usage.bad_request', `owner rule for unknown root ${JSON.stringify(r.root)}`);
    out[r.root as RootName] = { user: r.user, group: r.group };
  }
  return out;
}

/** The roots a request names, or the phase's roots when it names none. */
export function rootsOfScope(scope: { roots: string[] }, phase: Phase): string[] {
  return scope.roots.length ? scope.roots : rootsForPhase(phase);
}

export type HostOpRequestChecked = z.infer<typeof HostOpSchema>;

/** The input of a tls.external_write HostOp: JSON, checked against proto/external-tls.ts. */
export function parseExternalTlsWrite(input: string): ExternalTlsWrite {
  let json: unknown;
  try {
    json = JSON.parse(input);
  } catch {
    throw new CmError('usage.bad_request', 'bad HostOp request: input: not JSON');
  }
  return parse(ExternalTlsWriteSchema, json, 'HostOp tls.external_write');
}
