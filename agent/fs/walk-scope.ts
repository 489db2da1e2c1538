/**
 * What a walk looks at when the change journals say what changed (issue 25): a set of
 * paths, each with how far to look, so that a pass or a quick verify walks only those
 * parts of a root instead of all of it.
 *
 * - `entry`: this entry itself (one lstat); a directory is not read.
 * - `children`: this directory's direct entries (it is read); its subdirectories are not
 *   entered unless they are in the scope themselves.
 * - `subtree`: everything at and below this path (a directory created, or renamed or moved
 *   into place: its contents came along without an event of their own).
 *
 * The directories on the way from the root to a scoped path are looked at too (one lstat
 * each, never read): the merge needs every entry's directory before it, and a directory
 * whose contents changed has a new mtime to carry.
 *
 * Both agents of a pass walk the same scope, so that an entry the one side has and the
 * other does not is gone or new, as in a full walk. `covers(p)` says whether a walk with
 * this scope would have looked at `p`: what it does not cover keeps its records.
 */
import { compareNames } from '../../proto';

export type ScopeKind = 'entry' | 'children' | 'subtree';

/**
 * A path relative to --root (as walk entries' `rel`), and how far to look. `content`: data
 * may have been written there (a `children` directory: in any of its files), which size
 * and mtime need not show.
 */
export interface ScopedPath {
  path: string;
  scope: ScopeKind;
  content?: boolean;
}

const RANK: Record<ScopeKind, number> = { entry: 0, children: 1, subtree: 2 };

/** A node of the scope's tree: a path component. */
interface Node {
  kind?: ScopeKind;
  kids: Map<string, Node> | null;
}

/** A path relative to a root ('' for the root itself, as the change journal names it) as a path under --root. */
export function underRoot(rootRel: string, p: string): string {
  return p ? `${rootRel}/${p}` : rootRel;
}

/** How a directory that a scoped walk enters is read. */
export type DirScope = { all: true; node: null } | { all: false; node: Node; read: boolean };

/** The scope of one root; see the module comment. */
export class WalkScope {
  private readonly top: Node = { kids: null };
  /** Scoped paths after merging (a path inside a subtree counts once, as the subtree). */
  readonly size: number;
  /** Paths whose data may have been written, and directories any of whose files' may. */
  private readonly content = new Set<string>();
  private readonly contentDirs = new Set<string>();

  constructor(
    /** The root's own path (ResolvedRoot.rel). */
    readonly rootRel: string,
    paths: Iterable<ScopedPath>,
  ) {
    let n = 0;
    for (const p of paths) {
      if (p.path !== rootRel && !p.path.startsWith(rootRel + '/')) throw new Error(`scope path /${p.path} is outside root /${rootRel}`);
      if (p.content) (p.scope === 'children' ? this.contentDirs : this.content).add(p.path);
      const parts = p.path === rootRel ? [] : p.path.slice(rootRel.length + 1).split('/');
      let node = this.top;
      let covered = false;
      for (const part of parts) {
        if (node.kind === 'subtree') {
          covered = true;
          break;
        }
        node.kids ??= new Map();
        let next = node.kids.get(part);
        if (!next) node.kids.set(part, (next = { kids: null }));
        node = next;
      }
      if (covered) continue;
      if (node.kind === undefined) n++;
      if (node.kind === undefined || RANK[p.scope] > RANK[node.kind]) node.kind = p.scope;
      // A subtree holds everything below it: what was scoped there is covered already.
      if (node.kind === 'subtree') node.kids = null;
    }
    this.size = n;
  }

  /** The root is scoped as a whole subtree: a full walk. */
  get whole(): boolean {
    return this.top.kind === 'subtree';
  }

  /** Nothing is scoped: the walk has nothing to look at. */
  get empty(): boolean {
    return this.top.kind === undefined && !this.top.kids;
  }

  /** How the root directory itself is entered. */
  rootDir(): DirScope {
    return this.dirScope(this.top);
  }

  /** How a child directory of a directory entered as `parent` is entered; null: not entered. */
  childDir(parent: DirScope, name: string): DirScope | null {
    if (parent.all) return parent;
    const node = parent.node.kids?.get(name);
    return node ? this.dirScope(node) : null;
  }

  /**
   * The names to look at in a directory entered as `d`, in walk order: null when the
   * directory must be read (all its names); otherwise the scoped names below it.
   */
  names(d: DirScope): string[] | null {
    if (d.all || d.read) return null;
    return d.node.kids ? [...d.node.kids.keys()].sort(compareNames) : [];
  }

  /** Data may have been written at `rel` since the last pass: same size and mtime prove nothing. */
  contentChanged(rel: string): boolean {
    if (this.content.has(rel)) return true;
    if (this.contentDirs.size === 0) return false;
    const i = rel.lastIndexOf('/');
    return i > 0 && this.contentDirs.has(rel.slice(0, i));
  }

  /**
   * Whether a walk with this scope looks at `rel` (an entry of this root). Asked for every
   * record of a manifest, in walk order: what a directory's entries get is worked out once
   * per directory.
   */
  covers(rel: string): boolean {
    if (rel === this.rootRel) return true;
    const slash = rel.lastIndexOf('/');
    if (slash <= 0) return false;
    const dir = rel.slice(0, slash);
    if (dir !== this.lastDir) {
      this.lastDir = dir;
      this.lastDirScope = this.entriesOf(dir);
    }
    const d = this.lastDirScope;
    return d === true || (d !== false && d.kids !== null && d.kids.has(rel.slice(slash + 1)));
  }

  /** The entries of directory `dir` are all covered (true), none (false), or those its node names. */
  private entriesOf(dir: string): Node | boolean {
    if (dir !== this.rootRel && !dir.startsWith(this.rootRel + '/')) return false;
    let node = this.top;
    if (dir !== this.rootRel) {
      for (const part of dir.slice(this.rootRel.length + 1).split('/')) {
        if (node.kind === 'subtree') return true;
        const next = node.kids?.get(part);
        if (!next) return false;
        node = next;
      }
    }
    return node.kind === 'subtree' || node.kind === 'children' ? true : node;
  }

  private lastDir: string | null = null;
  private lastDirScope: Node | boolean = false;

  /**
   * A bound of the scope in walk order: every path the scope covers sorts at or before
   * it, or lies below it.
   */
  get last(): string {
    let node = this.top;
    let rel = this.rootRel;
    // Below a node that is read, whatever is there is covered: the bound is that node.
    while (node.kind !== 'children' && node.kind !== 'subtree' && node.kids && node.kids.size) {
      const name = [...node.kids.keys()].sort(compareNames).pop()!;
      node = node.kids.get(name)!;
      rel = `${rel}/${name}`;
    }
    return rel;
  }

  /**
   * Whether paths below `last` are covered: only when it is read (children, subtree). An
   * empty scope's bound is the root itself, with nothing below it covered.
   */
  get lastCoversBelow(): boolean {
    let node = this.top;
    while (node.kind !== 'children' && node.kind !== 'subtree' && node.kids && node.kids.size) {
      node = node.kids.get([...node.kids.keys()].sort(compareNames).pop()!)!;
    }
    return node.kind === 'children' || node.kind === 'subtree';
  }

  /** The scoped paths, in walk order, merged (for the wire and for logs). */
  paths(): ScopedPath[] {
    const out: ScopedPath[] = [];
    const visit = (node: Node, rel: string): void => {
      if (node.kind) {
        const content = node.kind === 'children' ? this.contentDirs.has(rel) : this.content.has(rel);
        out.push(content ? { path: rel, scope: node.kind, content } : { path: rel, scope: node.kind });
      }
      if (node.kids) for (const name of [...node.kids.keys()].sort(compareNames)) visit(node.kids.get(name)!, `${rel}/${name}`);
    };
    visit(this.top, this.rootRel);
    // Written-to paths below a subtree or a read directory: covered, but still to be said.
    const named = new Set(out.map((p) => p.path));
    for (const p of this.content) if (!named.has(p)) out.push({ path: p, scope: 'entry', content: true });
    for (const p of this.contentDirs) if (!named.has(p)) out.push({ path: p, scope: 'children', content: true });
    return out;
  }

  private dirScope(node: Node): DirScope {
    if (node.kind === 'subtree') return { all: true, node: null };
    return { all: false, node, read: node.kind === 'children' };
  }
}
