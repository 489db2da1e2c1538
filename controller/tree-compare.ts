/**
 * Compare two agents' verify listings as they stream in: both come in walk order, root by
 * root, as record lines (proto/verify-record.ts), so one merge pass finds every differing
 * path while holding only a few batches, and parses only the lines that differ.
 */
import { CmError, comparePaths, parseVerifyLine, type RootDigest__Output, type VerifyBatch__Output, type VerifyFields } from '../proto';

export interface Difference {
  path: string;
  what: string;
}

export interface RootComparison {
  root: string;
  entries: { old: number; new: number };
  sha256: { old: string; new: string };
  present: { old: boolean; new: boolean };
  match: boolean;
  /** Regular files whose digest each agent took from its records (quick verify), and files it read. */
  fromRecords: { old: number; new: number };
  read: { old: number; new: number };
  /**
   * How each agent looked at the root: only where its change journal said it changed since
   * its last digest (scoped, with the number of paths), or in full, with the reason.
   */
  walk: { old: RootWalkOf; new: RootWalkOf };
}

/** One host's walk of a root in a verify. */
export interface RootWalkOf {
  scoped: boolean;
  paths: number;
  reason: string;
}

export interface Comparison {
  differences: number;
  first: Difference[];
  roots: RootComparison[];
}

const NL = 0x0a;

/**
 * One agent's listing as a cursor over its record lines: the line at hand is located in its
 * batch's bytes without being copied out, and the next batch is awaited only when these are
 * used up.
 */
class Listing {
  private readonly it: AsyncIterator<VerifyBatch__Output>;
  private batch: VerifyBatch__Output | null = null;
  /** The batch's lines, the line at hand (start, end before its newline), or -1 past them. */
  private buf: Buffer = Buffer.alloc(0);
  start = 0;
  end = -1;
  /** The root the cursor is in: a batch's root_done ends it. */
  rootIdx = 0;
  /** The roots whose end the cursor passed, in order. */
  readonly rootsDone: string[] = [];
  ended = false;

  constructor(
    batches: AsyncIterable<VerifyBatch__Output>,
    private readonly side: 'old' | 'new',
  ) {
    this.it = batches[Symbol.asyncIterator]();
  }

  /** Make sure a line or a root's end is at hand (or the listing ended). */
  async fill(): Promise<void> {
    while (!this.ended && (this.batch === null || (this.end < 0 && !this.batch.root_done))) {
      const n = await this.it.next();
      if (n.done) this.ended = true;
      else {
        this.batch = n.value;
        this.buf = n.value.lines;
        if (this.buf.length && this.buf[this.buf.length - 1] !== NL) this.partial();
        this.locate(0);
      }
    }
  }

  private locate(from: number): void {
    this.start = from;
    if (from >= this.buf.length) {
      this.end = -1;
      return;
    }
    this.end = this.buf.indexOf(NL, from);
  }

  private partial(): never {
    throw this.refused(`its verify listing has a line without its end; its batches must hold whole lines`);
  }

  /** This agent's answer broke the Verify contract. */
  refused(what: string): CmError {
    return new CmError('wire.protocol', `the ${this.side} agent sent a bad verify answer: ${what}`, { hint: `run cmmigrate install-agent ${this.side} --plan PLAN, so that both agents are this release` });
  }

  /** After the listing ended: it must have ended exactly the roots asked, in order. */
  checkRoots(asked: readonly string[]): void {
    if (this.rootsDone.join('\n') !== asked.join('\n')) throw this.refused(`it answered for roots ${this.rootsDone.join(', ') || '(none)'}, where ${asked.join(', ')} were asked`);
  }

  /** Whether a line is at hand (else the root's end, or the listing's). Call after fill(). */
  hasLine(): boolean {
    return this.batch !== null && this.end >= 0;
  }

  /** The line at hand as text. */
  text(): string {
    return this.buf.toString('utf8', this.start, this.end);
  }

  /** The line at hand as fields; a line that is no record is a bad peer. */
  fields(): VerifyFields {
    const f = parseVerifyLine(this.text());
    if (!f) throw this.refused(`a line that is not a record: ${JSON.stringify(this.text().slice(0, 200))}`);
    return f;
  }

  /**
   * How many bytes from the lines at hand on are the same in both listings, in whole lines:
   * the rest of the shorter batch when it matches the other byte for byte (every batch ends
   * with a newline, so the other is then at a line's end too), else the line at hand when
   * that matches, else 0.
   */
  sameRun(o: Listing): number {
    const n = Math.min(this.buf.length - this.start, o.buf.length - o.start);
    if (this.buf.compare(o.buf, o.start, o.start + n, this.start, this.start + n) === 0) return n;
    const line = this.end + 1 - this.start;
    return line === o.end + 1 - o.start && this.buf.compare(o.buf, o.start, o.end, this.start, this.end) === 0 ? line : 0;
  }

  /** Step past `n` bytes of whole lines (sameRun's). */
  pass(n: number): void {
    this.locate(this.start + n);
  }

  /** The root's end at hand, if it is. */
  done(): RootDigest__Output | null {
    return this.batch && this.end < 0 ? this.batch.root_done : null;
  }

  /** Step past the line or root end at hand. */
  skip(): void {
    if (!this.batch) return;
    if (this.end >= 0) this.locate(this.end + 1);
    else if (this.batch.root_done) {
      this.rootsDone.push(this.batch.root_done.root);
      this.batch = null;
      this.rootIdx++;
    }
  }

  /** Whether another line or root end is at hand without waiting. */
  ready(): boolean {
    return this.ended || (this.batch !== null && (this.end >= 0 || this.batch.root_done !== null));
  }
}

const FIELDS: (keyof VerifyFields)[] = ['type', 'size', 'mode', 'user', 'group', 'mtime_us', 'sha256', 'link', 'hardlink'];

function show(field: keyof VerifyFields, v: unknown): string {
  if (field === 'mode') return Number(v).toString(8).padStart(4, '0');
  if (field === 'sha256') return String(v).slice(0, 12);
  if (field === 'mtime_us') {
    const us = BigInt(String(v));
    return new Date(Number(us / 1000n)).toISOString().replace('Z', '') + String(us % 1000n).padStart(3, '0') + 'Z';
  }
  return JSON.stringify(v);
}

/** What differs between two records of the same path, or '' when they match. */
export function describeDifference(a: VerifyFields, b: VerifyFields): string {
  const parts: string[] = [];
  for (const f of FIELDS) {
    if (String(a[f]) !== String(b[f])) {
      parts.push(f === 'sha256' ? 'content differs' : `${f === 'mtime_us' ? 'mtime' : f} ${show(f, a[f])} != ${show(f, b[f])}`);
    }
  }
  return parts.join(', ');
}

/**
 * Merge the old and new listings; keep the first `keep` differences, count them all. With
 * `asked`, each listing must end exactly those roots, in that order.
 */
export async function compareListings(oldB: AsyncIterable<VerifyBatch__Output>, newB: AsyncIterable<VerifyBatch__Output>, keep = 20, asked?: readonly string[]): Promise<Comparison> {
  const a = new Listing(oldB, 'old');
  const b = new Listing(newB, 'new');
  const result: Comparison = { differences: 0, first: [], roots: [] };
  const diff = (path: string, what: string): void => {
    result.differences++;
    if (result.first.length < keep) result.first.push({ path: '/' + path, what });
  };
  for (;;) {
    if (!a.ready() || !b.ready()) await Promise.all([a.fill(), b.fill()]);
    if (a.ended && b.ended) break;
    const xl = !a.ended && a.hasLine();
    const yl = !b.ended && b.hasLine();
    // Nearly every pair of lines is the same: compared as bytes, a batch at a time where
    // they can be, and neither is parsed.
    if (xl && yl && a.rootIdx === b.rootIdx) {
      const n = a.sameRun(b);
      if (n > 0) {
        a.pass(n);
        b.pass(n);
        continue;
      }
    }
    const xe = xl ? a.fields() : null;
    const ye = yl ? b.fields() : null;
    // Walk order: by root, then path, a root's end after its entries; an ended listing last.
    let o: number;
    if (a.ended) o = 1;
    else if (b.ended) o = -1;
    else if (a.rootIdx !== b.rootIdx) o = a.rootIdx - b.rootIdx;
    else if (!xe || !ye) o = !xe && !ye ? 0 : !xe ? 1 : -1;
    else o = xe.path === ye.path ? 0 : comparePaths(xe.path, ye.path);
    if (o < 0) {
      if (xe) diff(xe.path, 'missing on the new host');
      a.skip();
    } else if (o > 0) {
      if (ye) diff(ye.path, 'only on the new host');
      b.skip();
    } else {
      if (xe && ye) {
        const what = describeDifference(xe, ye);
        if (what) diff(xe.path, what);
      } else {
        const d1 = a.done();
        const d2 = b.done();
        if (d1 && d2) {
          result.roots.push({
            root: d1.root,
            entries: { old: Number(d1.entries), new: Number(d2.entries) },
            sha256: { old: d1.sha256, new: d2.sha256 },
            present: { old: d1.present, new: d2.present },
            match: d1.sha256 === d2.sha256 && d1.present === d2.present,
            fromRecords: { old: Number(d1.from_records), new: Number(d2.from_records) },
            read: { old: Number(d1.read), new: Number(d2.read) },
            walk: {
              old: { scoped: d1.scoped === true, paths: Number(d1.paths ?? 0), reason: d1.walk_reason ?? '' },
              new: { scoped: d2.scoped === true, paths: Number(d2.paths ?? 0), reason: d2.walk_reason ?? '' },
            },
          });
        }
      }
      a.skip();
      b.skip();
    }
  }
  if (asked) {
    a.checkRoots(asked);
    b.checkRoots(asked);
  }
  return result;
}
