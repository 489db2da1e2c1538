/**
 * The README and the pages in docs/ link to each other (issue 24): every relative link must
 * lead to a file that exists, and a link with an `#anchor` to a heading of that file, named
 * as GitHub names it. The README stays short: the long parts live in docs/.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const repo = path.join(__dirname, '..');

/** The README's length at most, in lines (it aims at 250 to 300). */
const README_MAX_LINES = 320;

/**
 * The text outside fenced code blocks (their lines left empty), and with `codeSpans` false
 * inline code spans blanked too: links in code are examples, not links.
 */
function prose(text: string, codeSpans = false): string {
  const out: string[] = [];
  let fence: string | null = null;
  for (const line of text.split('\n')) {
    const m = /^\s*(```+|~~~+)/.exec(line);
    if (fence) {
      if (m && m[1][0] === fence[0] && m[1].length >= fence.length) fence = null;
      out.push('');
      continue;
    }
    if (m) {
      fence = m[1];
      out.push('');
      continue;
    }
    out.push(codeSpans ? line : line.replace(/(`+)[^`]*?\1/g, (s) => ' '.repeat(s.length)));
  }
  return out.join('\n');
}

/** The targets of a Markdown text's inline links and images, and of its reference definitions. */
export function markdownLinks(text: string): string[] {
  const body = prose(text);
  const out: string[] = [];
  // [text](target "title"), also across a line break inside the text; ![alt](target) the same.
  for (const m of body.matchAll(/\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+"[^"]*")?\s*\)/g)) out.push(m[1].replace(/^<|>$/g, ''));
  for (const m of body.matchAll(/^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)/gm)) out.push(m[1].replace(/^<|>$/g, ''));
  return out;
}

/** A heading's anchor as GitHub makes it: lowercase, punctuation but '-' and '_' dropped, spaces to '-'. */
export function githubSlug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\p{M}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** Every anchor a Markdown text's headings give, a repeated heading getting -1, -2, ... as on GitHub. */
export function headingAnchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  // The heading as written, code spans and all: GitHub keeps their words.
  for (const line of prose(text, true).split('\n')) {
    const m = /^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line);
    if (!m) continue;
    const base = githubSlug(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** How a check sees files: whether a path exists, and a Markdown file's text. */
export interface DocFiles {
  exists(p: string): boolean;
  text(p: string): string;
}

const diskFiles: DocFiles = {
  exists: (p) => fs.existsSync(p),
  text: (p) => fs.readFileSync(p, 'utf8'),
};

/** The relative links of `file` (with text `text`) that lead nowhere, each with the reason. */
export function brokenLinks(file: string, text: string, files: DocFiles = diskFiles): string[] {
  const bad: string[] = [];
  for (const link of markdownLinks(text)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(link) || link.startsWith('//')) continue; // https:, mailto:, ...
    const hash = link.indexOf('#');
    const target = decodeURIComponent(hash < 0 ? link : link.slice(0, hash));
    const anchor = hash < 0 ? '' : decodeURIComponent(link.slice(hash + 1));
    const resolved = target ? path.resolve(path.dirname(file), target) : file;
    if (!files.exists(resolved)) {
      bad.push(`${link}: no file ${path.relative(repo, resolved)}`);
      continue;
    }
    if (!anchor) continue;
    if (!resolved.endsWith('.md')) {
      bad.push(`${link}: an anchor into a file that is not Markdown`);
      continue;
    }
    const source = resolved === file ? text : files.text(resolved);
    if (!headingAnchors(source).has(anchor)) bad.push(`${link}: no heading #${anchor} in ${path.relative(repo, resolved)}`);
  }
  return bad;
}

const docs = (): string[] => [
  path.join(repo, 'README.md'),
  ...fs
    .readdirSync(path.join(repo, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => path.join(repo, 'docs', f)),
];

describe('the documentation links', () => {
  it('leads every relative link of the README and of docs/ to a file and a heading that exist', () => {
    const bad: string[] = [];
    for (const file of docs()) {
      for (const b of brokenLinks(file, fs.readFileSync(file, 'utf8'))) bad.push(`${path.relative(repo, file)}: ${b}`);
    }
    expect(bad).toEqual([]);
  });

  it('links every page of docs/ from the README', () => {
    const readme = fs.readFileSync(path.join(repo, 'README.md'), 'utf8');
    const linked = new Set(markdownLinks(readme).map((l) => l.split('#')[0]));
    for (const file of docs().slice(1)) expect(linked, `README links ${path.relative(repo, file)}`).toContain(path.relative(repo, file));
  });

  it('keeps the README short', () => {
    const readme = fs.readFileSync(path.join(repo, 'README.md'), 'utf8');
    const lines = readme.endsWith('\n') ? readme.split('\n').length - 1 : readme.split('\n').length;
    expect(lines).toBeLessThanOrEqual(README_MAX_LINES);
  });

  it('names anchors as GitHub does', () => {
    expect(githubSlug("The bridge's speed")).toBe('the-bridges-speed');
    expect(githubSlug('The bridge: mail back on before DNS moves (`run --bridge`)')).toBe('the-bridge-mail-back-on-before-dns-moves-run---bridge');
    expect(githubSlug('4. The steps by hand: copy and verify')).toBe('4-the-steps-by-hand-copy-and-verify');
    expect(githubSlug('agent_peak rss')).toBe('agent_peak-rss');
    expect([...headingAnchors('# A\n\n## A\n\n```\n# not a heading\n```\n### B #\n#### The `--json` output\n')]).toEqual(['a', 'a-1', 'b', 'the---json-output']);
  });

  it('reports a link that leads nowhere', () => {
    // A made-up page beside the README, checked against a made-up set of files.
    const page = path.join(repo, 'docs', 'made-up.md');
    const files: DocFiles = {
      exists: (p) => [page, path.join(repo, 'README.md'), path.join(repo, 'docs', 'there.md')].includes(p),
      text: (p) => (p === path.join(repo, 'docs', 'there.md') ? '# There\n\n## A heading\n' : '# README\n'),
    };
    const text = [
      '# Made up',
      '',
      '## Here',
      '',
      'Fine: [the README](../README.md), [a heading](there.md#a-heading), [here](#here),',
      '[the web](https://example.org/nowhere.md), `[in code](missing-in-code.md)`.',
      '',
      'Broken: [a missing page](missing.md), [a missing heading](there.md#no-such-heading),',
      '[a missing anchor here](#nowhere), and an image ![alt](img/missing.png).',
      '',
      '```md',
      '[in a fence](also-missing.md)',
      '```',
      '',
      '[ref]: ../nope/README.md',
    ].join('\n');
    expect(markdownLinks(text)).not.toContain('missing-in-code.md');
    expect(brokenLinks(page, text, files)).toEqual([
      'missing.md: no file docs/missing.md',
      'there.md#no-such-heading: no heading #no-such-heading in docs/there.md',
      '#nowhere: no heading #nowhere in docs/made-up.md',
      'img/missing.png: no file docs/img/missing.png',
      '../nope/README.md: no file nope/README.md',
    ]);
  });
});
