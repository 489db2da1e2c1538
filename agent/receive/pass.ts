/**
 * What the parts of a receiving pass share: its options, and the context that the merge
 * (merge.ts) and the executor (executor.ts) work in, which pull.ts provides.
 */
import type { Item, ListBatch__Output, ListRoot__Output, PassProgress, PassSummary, Phase, RootName } from '../../proto';
import type { ActionQueue } from './action-queue';
import type { PassDigests } from '../verify/digest-records';
import type { FetchChannel, FetchReader } from './fetch-reader';
import type { Identity } from '../fs/identity';
import type { ManifestWriter } from './manifest';
import type { AgentRoots, ResolvedRoot } from '../fs/paths';

/** An owner a root's entries get on the new host, whatever the source says. */
export interface OwnerNames {
  user: string;
  group: string;
}

/** One receiving pass. */
export interface PullOptions {
  cfg: AgentRoots;
  roots: ResolvedRoot[];
  phase: Phase;
  owners: Partial<Record<RootName, OwnerNames>>;
  identity: Identity;
  /** Where the manifests live (outside the roots). */
  stateDir: string;
  list: AsyncIterable<ListBatch__Output>;
  openFetch: () => FetchChannel;
  dryRun?: boolean;
  /** Largest number of deletes; beyond it the pass fails. Negative: no limit. */
  maxDelete?: number;
  onProgress?: (p: PassProgress) => void;
  /** What a dry run would do, entry by entry. */
  onItem?: (i: Item) => void;
  /** Called whenever the pass makes progress; a watchdog uses it to find a stalled sender. */
  onActivity?: () => void;
  /**
   * The change journals (issue 25): the roots this receiver asked a scoped listing for, and
   * why each other root is walked in full. Unset: every root is walked in full.
   */
  journal?: { asked: Set<string>; reasons: Map<string, string> };
  /** The sender's announcement of every root, once the pass has it. */
  onAnnounced?: (announced: Map<string, ListRoot__Output>) => void;
}

/** Paths a summary lists, at most. */
export const REPORT_LIMIT = 100;

/** The state of one pass that the merge and the executor both see. */
export interface PassContext {
  readonly o: PullOptions;
  readonly summary: PassSummary;
  /** This root's progress; replaced when the next root begins. */
  readonly progress: PassProgress;
  readonly queue: ActionQueue;
  /** The journal of the root being merged (null in a dry run). */
  writer: ManifestWriter | null;
  /** The Fetch call (null in a dry run). */
  readonly fetch: FetchReader | null;
  /** The digests of the files this pass lands, for a quick verify of this host (null in a dry run). */
  readonly digests: PassDigests | null;
  /** The sender skipped a file: this pass deletes nothing. */
  readErrors: boolean;
  /** The executor changed this host's tree in the root being merged (set per root). */
  wrote: boolean;
  /** Owner ids on this host for a listed entry's names (or the root's forced owner). */
  owner(root: ResolvedRoot, user: string, group: string, rel: string): { uid: number; gid: number };
  /** Count files and bytes done, and report progress now and then. */
  tick(files: number, bytes: number): void;
  /** Something moved: the listing, the data, or the executor. */
  activity(): void;
}
