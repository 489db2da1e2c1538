/**
 * A generated block of a documentation page, between a start and an end marker: where the
 * bench's figure scripts (performance.ts, bridge-figures.ts) write their text into
 * docs/performance.md, and what test/readme-figures.test.ts compares with what those
 * scripts make. (The figures were in the README before; the names stayed.)
 */

/** The page's block from `start` through `end`, markers included, or undefined when a marker is missing. */
export function readmeBlock(readme: string, start: string, end: string): string | undefined {
  const a = readme.indexOf(start);
  const b = a < 0 ? -1 : readme.indexOf(end, a);
  return a < 0 || b < 0 ? undefined : readme.slice(a, b + end.length);
}

/** The page with its block from `start` through `end` replaced by `block`; `what` names the block when a marker is missing. */
export function withReadmeBlock(readme: string, start: string, end: string, block: string, what: string): string {
  const current = readmeBlock(readme, start, end);
  if (current === undefined) throw new Error(`the page has no generated ${what} part (its markers are missing; the figures live in docs/)`);
  const a = readme.indexOf(start);
  return readme.slice(0, a) + block + readme.slice(a + current.length);
}

/**
 * The page a figure script writes into: `--doc FILE` taken out of `args` (`--readme FILE`,
 * its older name, still works), or undefined when neither is given.
 */
export function takeDocArg(args: string[]): string | undefined {
  for (const flag of ['--doc', '--readme']) {
    const at = args.indexOf(flag);
    if (at < 0) continue;
    const file = args.splice(at, 2)[1];
    if (!file) throw new Error(`${flag} needs a file, e.g. ${flag} docs/performance.md`);
    return file;
  }
  return undefined;
}
