/**
 * Compare two agents' verify listings as they stream in: both come in walk order, root by
 * root, so one merge pass finds every differing path while holding only a few batches.
 */
import { comparePaths, type RootDigest__Output, type VerifyBatch__Output, type VerifyEntry__Output } from '../proto';

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
}

export interface Comparison {
  differences: number;
  first: Difference[];
  roots: RootComparison[];
}

type Item = { rootIdx: number; entry: VerifyEntry__Output } | { rootIdx: number; done: RootDigest__Output };

async function* items(batches: AsyncIterable<VerifyBatch__Output>): AsyncGenerator<Item> {
  let rootIdx = 0;
  for await (const b of batches) {
    for (const entry of b.entries) yield { rootIdx, entry };
    if (b.root_done) {
      yield { rootIdx, done: b.root_done };
      rootIdx++;
    }
  }
}

const FIELDS: (keyof VerifyEntry__Output)[] = ['type', 'size', 'mode', 'user', 'group', 'mtime_us', 'sha256', 'link', 'hardlink'];

function show(field: keyof VerifyEntry__Output, v: unknown): string {
  if (field === 'mode') return Number(v).toString(8).padStart(4, '0');
  if (field === 'sha256') return String(v).slice(0, 12);
  if (field === 'mtime_us') {
    const us = BigInt(String(v));
    return new Date(Number(us / 1000n)).toISOString().replace('Z', '') + String(us % 1000n).padStart(3, '0') + 'Z';
  }
  return JSON.stringify(v);
}

/** What differs between two records of the same path, or '' when they match. */
export function describeDifference(a: VerifyEntry__Output, b: VerifyEntry__Output): string {
  const parts: string[] = [];
  for (const f of FIELDS) {
    if (String(a[f]) !== String(b[f])) {
      parts.push(f === 'sha256' ? 'content differs' : `${f === 'mtime_us' ? 'mtime' : f} ${show(f, a[f])} != ${show(f, b[f])}`);
    }
  }
  return parts.join(', ');
}

/** Walk order of merged items: by root, then path, a root's end after its entries. */
function order(x: Item | undefined, y: Item | undefined): number {
  if (!x) return 1;
  if (!y) return -1;
  if (x.rootIdx !== y.rootIdx) return x.rootIdx - y.rootIdx;
  const xd = 'done' in x;
  const yd = 'done' in y;
  if (xd || yd) return xd && yd ? 0 : xd ? 1 : -1;
  return comparePaths((x as { entry: VerifyEntry__Output }).entry.path, (y as { entry: VerifyEntry__Output }).entry.path);
}

/** Merge the old and new listings; keep the first `keep` differences, count them all. */
export async function compareListings(oldB: AsyncIterable<VerifyBatch__Output>, newB: AsyncIterable<VerifyBatch__Output>, keep = 20): Promise<Comparison> {
  const a = items(oldB);
  const b = items(newB);
  let x = await a.next();
  let y = await b.next();
  const result: Comparison = { differences: 0, first: [], roots: [] };
  const diff = (path: string, what: string): void => {
    result.differences++;
    if (result.first.length < keep) result.first.push({ path: '/' + path, what });
  };
  while (!x.done || !y.done) {
    const xi = x.done ? undefined : x.value;
    const yi = y.done ? undefined : y.value;
    const o = order(xi, yi);
    if (o < 0) {
      if (xi && 'entry' in xi) diff(xi.entry.path, 'missing on the new host');
      x = await a.next();
    } else if (o > 0) {
      if (yi && 'entry' in yi) diff(yi.entry.path, 'only on the new host');
      y = await b.next();
    } else {
      if (xi && yi && 'entry' in xi && 'entry' in yi) {
        const what = describeDifference(xi.entry, yi.entry);
        if (what) diff(xi.entry.path, what);
      } else if (xi && yi && 'done' in xi && 'done' in yi) {
        const d1 = xi.done;
        const d2 = yi.done;
        result.roots.push({
          root: d1.root,
          entries: { old: Number(d1.entries), new: Number(d2.entries) },
          sha256: { old: d1.sha256, new: d2.sha256 },
          present: { old: d1.present, new: d2.present },
          match: d1.sha256 === d2.sha256 && d1.present === d2.present,
          fromRecords: { old: Number(d1.from_records), new: Number(d2.from_records) },
          read: { old: Number(d1.read), new: Number(d2.read) },
        });
      }
      x = await a.next();
      y = await b.next();
    }
  }
  return result;
}
