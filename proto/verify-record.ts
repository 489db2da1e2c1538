/**
 * One entry of a verify listing as a line of text: the agent hashes these lines, one per
 * entry, into the root's digest and sends the same lines to the controller, which compares
 * the two hosts' lines as bytes and parses only the lines that differ.
 *
 * A line is the JSON array [path, type, size, mode, user, group, mtime_us, sha256, link,
 * hardlink] (size and mtime_us as decimal strings), with no newline.
 */

/** A verify record's fields. */
export interface VerifyFields {
  /** Host path relative to --root, e.g. home/vmail/mail/x/cur/1. */
  path: string;
  /** file, dir, symlink, fifo or device. */
  type: string;
  /** Decimal; '0' for all but regular files. */
  size: string;
  /** Permission bits with setuid, setgid and sticky; 0 for a symlink. */
  mode: number;
  /** Owner names after the plan's owner rules. */
  user: string;
  group: string;
  /** Microseconds since the epoch, decimal; '0' for a directory the host itself changes. */
  mtime_us: string;
  /** Content SHA-256 (hex) of a regular file, else ''. */
  sha256: string;
  /** A symlink's target, else ''. */
  link: string;
  /** The first path of the entry's hard-link group in walk order, else ''. */
  hardlink: string;
}

/**
 * The line of one record. `userJson` and `groupJson` are the names already as JSON strings
 * (the caller keeps them per owner); type, size, mtime and sha256 need no escaping.
 */
export function verifyLine(path: string, type: string, size: string, mode: number, userJson: string, groupJson: string, mtimeUs: string, sha256: string, link: string, hardlink: string): string {
  return `[${JSON.stringify(path)},"${type}","${size}",${mode},${userJson},${groupJson},"${mtimeUs}","${sha256}",${link ? JSON.stringify(link) : '""'},${hardlink ? JSON.stringify(hardlink) : '""'}]`;
}

/** The line of a record given as fields: what `verifyLine` makes of them. */
export function verifyLineOf(f: VerifyFields): string {
  return verifyLine(f.path, f.type, f.size, f.mode, JSON.stringify(f.user), JSON.stringify(f.group), f.mtime_us, f.sha256, f.link, f.hardlink);
}

/** A record's fields from its line, or null when the line is not one (a peer's bad bytes). */
export function parseVerifyLine(line: string): VerifyFields | null {
  let a: unknown;
  try {
    a = JSON.parse(line);
  } catch {
    return null;
  }
  if (!Array.isArray(a) || a.length !== 10) return null;
  const [path, type, size, mode, user, group, mtime_us, sha256, link, hardlink] = a as unknown[];
  const strings = [path, type, size, user, group, mtime_us, sha256, link, hardlink];
  if (strings.some((s) => typeof s !== 'string') || typeof mode !== 'number') return null;
  return { path, type, size, mode, user, group, mtime_us, sha256, link, hardlink } as VerifyFields;
}
