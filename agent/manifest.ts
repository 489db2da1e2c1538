/**
 * The receiving agent's record of what its passes put on this host, per root, so that a
 * later pass deletes only entries cmmigrate wrote and recognises renamed files.
 *
 * A pass appends one JSON line per entry to its own journal, in walk order (`main`), plus
 * a second sorted journal for entries settled at the end of a root (`extra`). A
 * directory's record is written when it is created or found, before its contents. When the pass
 * succeeds its journals become the root's manifest (fsync, then rename); until then the
 * previous manifest and any journal of an interrupted pass stay, and count as "ours".
 * Readers merge all of a root's files in walk order, holding one line of each.
 */
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { comparePaths } from '../proto';
import { LineReader } from './line-reader';
import { manifestLine, parseManifestLine, type ManifestRecord, type StoredRecord } from './manifest-line';

export type { ManifestRecord, StoredRecord } from './manifest-line';


const MANIFEST = 'manifest';

function filesOf(dir: string, root: string, names: string[]): string[] {
  return names.filter((n) => n.startsWith(root + '.') && n.endsWith('.jsonl')).map((n) => path.join(dir, n));
}


/** Reads every manifest file of a root as one sorted stream, answering `at(path)` in walk order. */
export class ManifestReader {
  private heads: { rec: StoredRecord | null; lines: LineReader }[] = [];
  /**
   * Only a committed manifest, no journal of an interrupted pass: every record in it was
   * made durable (sync) before that pass committed it.
   */
  clean = true;

  static async open(dir: string, root: string): Promise<ManifestReader> {
    const r = new ManifestReader();
    let names: string[] = [];
    try {
      names = await fs.readdir(dir);
    } catch {
      /* no manifest yet */
    }
    const committed = new Set([`${root}.${MANIFEST}.jsonl`, `${root}.${MANIFEST}.extra.jsonl`].map((n) => path.join(dir, n)));
    for (const file of filesOf(dir, root, names)) {
      if (!committed.has(file)) r.clean = false;
      const head = { rec: null as StoredRecord | null, lines: new LineReader(file) };
      r.heads.push(head);
      r.advance(head);
    }
    return r;
  }

  /**
   * The next record of a file, skipping empty lines; null at its end, and at a line that is
   * no record: a torn last line of a killed pass makes the rest of that file unusable.
   */
  private advance(h: { rec: StoredRecord | null; lines: LineReader }): void {
    for (;;) {
      const line = h.lines.next();
      if (line === null) {
        h.rec = null;
        return;
      }
      if (!line) continue;
      h.rec = parseManifestLine(line);
      if (!h.rec) h.lines.close();
      return;
    }
  }

  /** The record of `p`, if any, with its line. Calls must come in walk order. */
  at(p: string): StoredRecord | undefined {
    let found: StoredRecord | undefined;
    for (const h of this.heads) {
      while (h.rec && comparePaths(h.rec.p, p) < 0) this.advance(h);
      if (h.rec && h.rec.p === p) {
        found = h.rec; // later files (newer passes) win
        this.advance(h);
      }
    }
    return found;
  }

  /** Close the files still open (a pass that stopped early). */
  close(): void {
    for (const h of this.heads) h.lines.close();
  }
}

/**
 * Appends this pass's records; `commit` turns them into the root's manifest. Records go to
 * the journal with plain synchronous writes in small batches, and whenever the pass waits
 * for data: if the agent is killed, the page cache still has them, and the next pass
 * knows what this one put there.
 */
export class ManifestWriter {
  private readonly id = `pass-${Date.now()}-${process.pid}`;
  private readonly files: Record<'main' | 'extra', { path: string; fd: number | null; buf: string[]; fresh: number }>;

  constructor(
    private readonly dir: string,
    private readonly root: string,
  ) {
    this.files = {
      main: { path: path.join(dir, `${root}.${this.id}.jsonl`), fd: null, buf: [], fresh: 0 },
      extra: { path: path.join(dir, `${root}.${this.id}.extra.jsonl`), fd: null, buf: [], fresh: 0 },
    };
  }

  /** Set by close(): the pass stopped, but an action already under way may still append. */
  private closed = false;

  append(rec: ManifestRecord, which: 'main' | 'extra' = 'main'): void {
    this.appendLine(manifestLine(rec), which);
  }

  /** Append a record given as its line (manifestLine, or a line read back from a manifest). */
  appendLine(line: string, which: 'main' | 'extra' = 'main'): void {
    this.files[which].fresh++;
    this.push(line, which);
  }

  /**
   * Append the record of an entry this pass leaves as it is. Such lines wait in larger
   * batches: this pass changed nothing they describe, and until it commits the manifest and
   * journals that recorded those entries stay and still count, so a kill that loses such a
   * line leaves the entry as ours as it was before, and the next pass records it again.
   */
  appendKept(line: string): void {
    this.push(line, 'main');
  }

  private push(line: string, which: 'main' | 'extra'): void {
    const f = this.files[which];
    f.buf.push(line);
    if (this.closed) {
      // The executor finished an action (a link or rename it awaited) after the pass was
      // stopped: its file is in place, so its record goes to the journal at once, or the
      // next pass would take the file for one cmmigrate did not write.
      this.flushOne(which);
      if (f.fd !== null) fsSync.closeSync(f.fd);
      f.fd = null;
      return;
    }
    if (f.buf.length >= (f.fresh ? 32 : 256)) this.flushOne(which);
  }

  /** Write what is buffered (cheap: one write per file). */
  flush(): void {
    this.flushOne('main');
    this.flushOne('extra');
  }

  /**
   * Make the journal exist before this pass changes the tree: a pass killed after that
   * leaves a journal, so the next pass knows there may be writes that were never synced
   * (ManifestReader.clean).
   */
  open(): void {
    this.openOne(this.files.main);
  }

  private openOne(f: { path: string; fd: number | null }): number {
    if (f.fd === null) {
      fsSync.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      f.fd = fsSync.openSync(f.path, 'a', 0o600);
    }
    return f.fd;
  }

  private flushOne(which: 'main' | 'extra'): void {
    const f = this.files[which];
    if (!f.buf.length) return;
    this.openOne(f);
    const text = f.buf.join('\n') + '\n';
    f.buf = [];
    f.fresh = 0;
    fsSync.writeSync(f.fd!, text);
  }

  /** Make this pass's records the root's manifest, durably. */
  async commit(): Promise<void> {
    this.flush();
    const final: Record<'main' | 'extra', string> = {
      main: path.join(this.dir, `${this.root}.${MANIFEST}.jsonl`),
      extra: path.join(this.dir, `${this.root}.${MANIFEST}.extra.jsonl`),
    };
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const which of ['main', 'extra'] as const) {
      const f = this.files[which];
      if (f.fd !== null) {
        fsSync.fsyncSync(f.fd);
        fsSync.closeSync(f.fd);
        f.fd = null;
      } else {
        await fs.writeFile(f.path, '', { mode: 0o600 });
      }
    }
    // Replace the old manifest and the journals of interrupted passes.
    const names = await fs.readdir(this.dir);
    for (const which of ['main', 'extra'] as const) await fs.rename(this.files[which].path, final[which]);
    const keep = new Set(Object.values(final));
    for (const file of filesOf(this.dir, this.root, names)) if (!keep.has(file)) await fs.rm(file, { force: true });
    const d = await fs.open(this.dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }

  /** Keep what was written as a journal of an interrupted pass (it still counts as ours). */
  close(): void {
    this.closed = true;
    for (const which of ['main', 'extra'] as const) {
      const f = this.files[which];
      try {
        this.flushOne(which);
      } catch {
        /* best effort: the pass failed already */
      }
      if (f.fd !== null) {
        fsSync.closeSync(f.fd);
        f.fd = null;
      }
    }
  }
}
