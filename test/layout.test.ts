/**
 * The agent's folders and what each may import (issue 24): a file's folder says what it may
 * touch. The sender and the receiver never import each other, the shared pieces in fs/
 * import nothing of the agent, and no folder reaches up into the service layer at the top
 * of agent/ but for the log, the TLS material and the checked requests. agent/ never
 * imports controller/, nor controller/ agent/. Type-only imports count: they are what a
 * reader has to open.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const repo = path.join(__dirname, '..');

/** Per folder of agent/, what it may import ('top:x' is agent/x.ts). */
const ALLOWED: Record<string, string[]> = {
  fs: ['fs'],
  wire: ['wire', 'fs'],
  send: ['send', 'fs', 'wire', 'verify', 'journal', 'top:requests'],
  receive: ['receive', 'fs', 'wire', 'verify', 'journal', 'top:requests', 'top:log', 'top:tls'],
  verify: ['verify', 'fs', 'wire', 'journal'],
  host: ['host', 'fs', 'top:requests', 'top:log'],
  bridge: ['bridge'],
  journal: ['journal', 'fs', 'top:log'],
  build: [],
};

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (/\.(ts|js)$/.test(e.name)) out.push(p);
  }
  return out;
}

/** The relative specifiers a file imports, requires or re-exports. */
export function relativeImports(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom|\bimport|\brequire)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) out.push(m[1]);
  return out;
}

/** Where an import lands, as 'top:name', a folder of agent/, or the top-level part of the repo. */
function placeOf(abs: string): string {
  const rel = path.relative(path.join(repo, 'agent'), abs);
  if (rel.startsWith('..')) return `repo:${path.relative(repo, abs).split(path.sep)[0]}`;
  const parts = rel.split(path.sep);
  return parts.length === 1 ? `top:${parts[0].replace(/\.(ts|js)$/, '')}` : parts[0];
}

function violations(): string[] {
  const bad: string[] = [];
  for (const file of sources(path.join(repo, 'agent'))) {
    const from = placeOf(file);
    for (const spec of relativeImports(fs.readFileSync(file, 'utf8'))) {
      const to = placeOf(path.resolve(path.dirname(file), spec));
      if (to.startsWith('repo:')) {
        if (to === 'repo:controller') bad.push(`${path.relative(repo, file)} imports ${spec}: agent/ never imports controller/`);
        continue;
      }
      if (from.startsWith('top:') || to === from) continue;
      const allowed = ALLOWED[from];
      if (!allowed) bad.push(`${path.relative(repo, file)}: folder agent/${from}/ has no rule in test/layout.test.ts`);
      else if (!allowed.includes(to)) bad.push(`${path.relative(repo, file)} imports ${spec} (${to}), which agent/${from}/ may not`);
    }
  }
  for (const file of sources(path.join(repo, 'controller'))) {
    for (const spec of relativeImports(fs.readFileSync(file, 'utf8'))) {
      if (placeOf(path.resolve(path.dirname(file), spec)).startsWith('repo:') === false) bad.push(`${path.relative(repo, file)} imports ${spec}: controller/ never imports agent/`);
    }
  }
  return bad;
}

describe('the agent layout', () => {
  it('keeps every folder to what it may import', () => {
    expect(violations()).toEqual([]);
  });

  it('has folders by role and few files at its top', () => {
    const entries = fs.readdirSync(path.join(repo, 'agent'), { withFileTypes: true });
    const folders = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
    expect(folders).toEqual(Object.keys(ALLOWED).filter((f) => fs.existsSync(path.join(repo, 'agent', f))).sort());
    for (const f of ['send', 'receive', 'verify', 'host', 'fs', 'wire', 'bridge']) expect(folders).toContain(f);
    expect(entries.filter((e) => e.isFile()).length).toBeLessThanOrEqual(10);
  });

  it('sees a forbidden import when one is there', () => {
    // The check itself must be able to fail: the regex finds each form of import.
    expect(relativeImports(`import { x } from '../receive/pull';\nexport * from "./a";\nconst y = require('../send/listing');\nimport type { T } from '../../controller/plan';`)).toEqual([
      '../receive/pull',
      './a',
      '../send/listing',
      '../../controller/plan',
    ]);
    expect(placeOf(path.join(repo, 'agent', 'receive', 'pull'))).toBe('receive');
    expect(placeOf(path.join(repo, 'agent', 'log'))).toBe('top:log');
    expect(ALLOWED.send).not.toContain('receive');
    expect(ALLOWED.receive).not.toContain('send');
  });
});
