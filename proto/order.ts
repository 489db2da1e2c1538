/**
 * The one order in which every tree is walked, sent and compared: depth first, a directory
 * before its contents, siblings by the bytes of their UTF-8 names. Agents walk in it and
 * the controller merges two agents' listings by it.
 *
 * Both comparisons work on the strings' UTF-16 code units without encoding them: UTF-8
 * byte order equals code point order, which equals code-unit order except that surrogates
 * (code points above U+FFFF) sort after every other code unit.
 */

const SLASH = 0x2f;

function unitKey(c: number): number {
  return c >= 0xd800 && c <= 0xdfff ? c + 0x10000 : c;
}

/** Compare two file names by their UTF-8 bytes. */
export function compareNames(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca !== cb) return unitKey(ca) - unitKey(cb);
  }
  return a.length - b.length;
}

/** Compare two relative paths ('a/b/c') in walk order: component by component. */
export function comparePaths(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca === cb) continue;
    // A component that ends first sorts first.
    if (ca === SLASH) return -1;
    if (cb === SLASH) return 1;
    return unitKey(ca) - unitKey(cb);
  }
  return a.length - b.length;
}
