/**
 * The check of a listed path (paths.ts checkWirePath) in one pass over its characters, for
 * the common case of a plain ASCII path: the merge checks every listed entry, and splitting
 * each path into components and measuring each in bytes cost an array and a string per
 * component. Anything else — a trailing slash, a non-ASCII character, anything the check
 * would refuse — goes to checkWirePath, which decides and words the error.
 */
import { checkWirePath } from '../fs/paths';

/** The limits checkWirePath enforces (Linux PATH_MAX and NAME_MAX, in bytes). */
const MAX_PATH = 4096;
const MAX_NAME = 255;

/** The path as checkWirePath(p, what) returns it, or its error. */
export function checkListedPath(p: string, what: string): string {
  const n = p.length;
  if (n === 0 || n > MAX_PATH) return checkWirePath(p, what);
  let start = 0;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? p.charCodeAt(i) : 47; /* the end closes the last component */
    if (c === 47 /* / */) {
      const len = i - start;
      // Empty (a leading, doubled or trailing slash), "." or "..", or too long.
      if (len === 0 || len > MAX_NAME || (p.charCodeAt(start) === 46 && (len === 1 || (len === 2 && p.charCodeAt(start + 1) === 46)))) return checkWirePath(p, what);
      start = i + 1;
    } else if (c === 0 || c >= 0x80) {
      return checkWirePath(p, what);
    }
  }
  return p;
}
