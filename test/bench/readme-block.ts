/**
 * A generated block of the README, between a start and an end marker: where the bench's
 * figure scripts (performance.ts, bridge-figures.ts) write their text, and what
 * test/readme-figures.test.ts compares with what those scripts make.
 */

/** The README's block from `start` through `end`, markers included, or undefined when a marker is missing. */
export function readmeBlock(readme: string, start: string, end: string): string | undefined {
  const a = readme.indexOf(start);
  const b = a < 0 ? -1 : readme.indexOf(end, a);
  return a < 0 || b < 0 ? undefined : readme.slice(a, b + end.length);
}

/** The README with its block from `start` through `end` replaced by `block`; `what` names the block when a marker is missing. */
export function withReadmeBlock(readme: string, start: string, end: string, block: string, what: string): string {
  const current = readmeBlock(readme, start, end);
  if (current === undefined) throw new Error(`the README has no generated ${what} part (its markers are missing)`);
  const a = readme.indexOf(start);
  return readme.slice(0, a) + block + readme.slice(a + current.length);
}
