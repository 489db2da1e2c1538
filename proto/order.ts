/**
 * The one order in which every tree is walked, sent and compared: depth first, a directory
 * before its contents, siblings by the bytes of their UTF-8 names. Agents walk in it and
 * the controller merges two agents' listings by it.
 */

/** Compare two relative paths ('a/b/c') in walk order. */
export function comparePaths(a: string, b: string): number {
  if (a === b) return 0;
  const pa = a.split('/');
  const pb = b.split('/');
  const n = Math.min(pa.length, pb.length);
  for (let i = 0; i < n; i++) {
    if (pa[i] !== pb[i]) return compareNames(pa[i], pb[i]);
  }
  return pa.length - pb.length;
}

/** Compare two file names by their UTF-8 bytes. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
