/**
 * What a receiving pass commits beside a root's manifest so that the next pass can look
 * only at what changed (issue 25): the sender's journal position its listing covered, the
 * span of this host's journal the pass itself wrote in, and what both hosts' owner names
 * and the pass's owner rules were.
 *
 * It is written after the root's manifest commits, and removed before a pass changes the
 * root: a state file never describes more than the manifest beside it, so a kill at any
 * point leaves either the state of the last committed pass or none (a full walk next).
 * The next pass uses it only when every part still matches; anything else is a full walk.
 */
import { createHash } from 'node:crypto';
import * as fsSync from 'node:fs';
import * as path from 'node:path';
import type { RootName } from '../../proto';

/** One root's committed journal state. */
export interface RootJournalState {
  v: 1;
  /** The sender's journal position that the committed pass's listing covered. */
  sender: { epoch: string; seq: number };
  /** The sender's owner names as that pass saw them (Identity.digest). */
  senderIdentity: string;
  /**
   * This host's journal: the position at the pass's start (changes after it count for the
   * next pass) and at its end (this agent's own writes up to it were the pass's).
   */
  receiver: { epoch: string; start: number; end: number };
  /** This host's owner names and the pass's owner rule for the root (fingerprint()). */
  fingerprint: string;
}

const fileOf = (stateDir: string, root: string): string => path.join(stateDir, `${root}.journal-state.json`);

/** What else must be as it was for the manifest to stand for the tree: names and the owner rule. */
export function fingerprint(identityDigest: string | undefined, owner: { user: string; group: string } | undefined): string {
  return createHash('sha256')
    .update(JSON.stringify([identityDigest ?? '', owner ?? null]))
    .digest('hex')
    .slice(0, 32);
}

/** The committed state of a root, or null when there is none or it cannot be read. */
export function readJournalState(stateDir: string, root: RootName): RootJournalState | null {
  let text: string;
  try {
    text = fsSync.readFileSync(fileOf(stateDir, root), 'utf8');
  } catch {
    return null;
  }
  try {
    const s = JSON.parse(text) as RootJournalState;
    const ok =
      s.v === 1 &&
      typeof s.sender?.epoch === 'string' &&
      Number.isSafeInteger(s.sender.seq) &&
      typeof s.senderIdentity === 'string' &&
      typeof s.receiver?.epoch === 'string' &&
      Number.isSafeInteger(s.receiver.start) &&
      Number.isSafeInteger(s.receiver.end) &&
      typeof s.fingerprint === 'string';
    return ok ? s : null;
  } catch {
    return null;
  }
}

/** Commit a root's state: temp file, fsync, rename. */
export function writeJournalState(stateDir: string, root: RootName, state: RootJournalState): void {
  const file = fileOf(stateDir, root);
  const tmp = `${file}.tmp-${process.pid}`;
  fsSync.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const fd = fsSync.openSync(tmp, 'w', 0o600);
  try {
    fsSync.writeSync(fd, JSON.stringify(state) + '\n');
    fsSync.fsyncSync(fd);
  } finally {
    fsSync.closeSync(fd);
  }
  fsSync.renameSync(tmp, file);
}

/** Forget a root's state (the next pass walks it in full); durable before the root changes. */
export function dropJournalState(stateDir: string, root: RootName): void {
  const file = fileOf(stateDir, root);
  try {
    fsSync.unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const d = fsSync.openSync(stateDir, 'r');
  try {
    fsSync.fsyncSync(d);
  } finally {
    fsSync.closeSync(d);
  }
}
