/**
 * What a listing may leave out (issue 25): from the receiver's journal request of each root
 * and this host's change journal, the scope both agents walk, or the reason the root is
 * walked in full. The union of both hosts' changes is listed: the new host's changes made
 * behind cmmigrate's back need the old host's version of those paths.
 *
 * Sound or a full walk: no journal, a position of another epoch or after a loss, owner
 * names that changed on this host, too many paths, or a bad request all mean a full walk
 * of that root, never a skipped change.
 */
import type { RootName } from '../../proto';
import type { Identity } from '../fs/identity';
import { checkWirePath, type ResolvedRoot } from '../fs/paths';
import { underRoot, WalkScope, type ScopedPath } from '../fs/walk-scope';
import type { ChangeJournal, JournalPosition } from '../journal/journal';
import { MAX_SCOPE_PATHS, type RootJournalChecked } from '../requests';
import type { ListScopes } from './listing';

/** The scopes of one List call; `journal` null means this agent runs without one (`off` says why). */
export async function listScopes(journal: ChangeJournal | null, off: string | undefined, requests: RootJournalChecked[], identity: Identity, signal: AbortSignal): Promise<ListScopes> {
  let position: JournalPosition | null = null;
  let none = off ?? 'journal: off on the old host';
  if (journal) {
    try {
      // Before the walk: every change that completed before it is at or below this position.
      position = await journal.sync(signal);
    } catch (err) {
      none = `journal: the old host's journal did not answer (${(err as Error).message})`;
    }
  }
  const asked = new Map(requests.map((r) => [r.root, r]));
  return {
    position,
    identity: identity.digest ?? '',
    of(root: ResolvedRoot) {
      const r = asked.get(root.name);
      if (!r) return undefined;
      if (!journal || !position) return { reason: none };
      if (!r.since || !r.since.epoch) return { reason: 'journal: no earlier pass recorded where it left off' };
      if (!identity.digest || r.sender_identity !== identity.digest) return { reason: "journal: the old host's users or groups changed since the last pass" };
      const since = { epoch: r.since.epoch, seq: Number(r.since.seq) };
      const res = journal.changesSince(root.name as RootName, since);
      if ('full' in res) return { reason: res.full };
      // The receiver committed this position: nothing before it is asked for again.
      journal.forget(root.name as RootName, since);
      const paths: ScopedPath[] = res.changes.map((c) => ({ path: underRoot(root.rel, c.path), scope: c.scope, content: c.content }));
      for (const c of r.changed) {
        let rel: string;
        try {
          rel = checkWirePath(c.path, 'scoped path');
        } catch {
          return { reason: `journal: the new host named a bad path ${JSON.stringify(c.path)}` };
        }
        if (rel !== root.rel && !rel.startsWith(root.rel + '/')) return { reason: `journal: the new host named /${rel}, outside root ${root.name}` };
        paths.push({ path: rel, scope: c.scope, content: c.content === true });
      }
      if (paths.length > MAX_SCOPE_PATHS) return { reason: `journal: ${paths.length} paths changed, more than are listed one by one` };
      const scope = new WalkScope(root.rel, paths);
      if (scope.whole) return { reason: 'journal: the root itself came or went' };
      return { scope, lastTry: r.last_try };
    },
  };
}
