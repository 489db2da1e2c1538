/**
 * The error registry (proto/errors.ts) is the one table of codes, exit codes and gRPC
 * statuses: the README documents what it says, and every code the source raises is in it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { CmError, ERRORS, ExitCode, fromServiceError, isErrorCode } from '../proto';

const TOP = path.resolve(__dirname, '..');
const README = fs.readFileSync(path.join(TOP, 'README.md'), 'utf8');

/** The rows of the first Markdown table after a line matching `after`. */
function tableAfter(after: RegExp): string[][] {
  const lines = README.split('\n');
  const start = lines.findIndex((l) => after.test(l));
  expect(start, `README has ${after}`).toBeGreaterThanOrEqual(0);
  let i = start;
  while (i < lines.length && !lines[i].startsWith('|')) i++;
  const rows: string[][] = [];
  for (i += 2; i < lines.length && lines[i].startsWith('|'); i++) rows.push(lines[i].split('|').slice(1, -1).map((c) => c.trim()));
  expect(rows.length).toBeGreaterThan(0);
  return rows;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'generated' && e.name !== 'build') out.push(...sourceFiles(p));
    } else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

const FAMILIES = [...new Set(Object.keys(ERRORS).map((c) => c.split('.')[0]))];
/** Dotted literals of the code families that are file names or plan keys, not codes. */
const NOT_CODES = new Set(['agent.crt', 'agent.key', 'journal.json', 'dns.servers', 'bridge.json', 'report.html']);

/** Every dotted string literal of a code family in the shipped source, with where it is. */
function codesInSource(): Map<string, string> {
  const re = new RegExp(`['"\`]((?:${FAMILIES.join('|')})\\.[a-z][a-z0-9_]*)['"\`]`, 'g');
  const found = new Map<string, string>();
  for (const dir of ['agent', 'controller', 'proto']) {
    for (const file of sourceFiles(path.join(TOP, dir))) {
      let text = fs.readFileSync(file, 'utf8');
      // The registry itself does not count as a use.
      if (file.endsWith(path.join('proto', 'errors.ts'))) text = text.replace(/export const ERRORS = \{[\s\S]*?\n\}/, '');
      for (const m of text.matchAll(re)) if (!NOT_CODES.has(m[1]) && !found.has(m[1])) found.set(m[1], path.relative(TOP, file));
    }
  }
  return found;
}

describe('error registry', () => {
  it('knows every code the source raises, and holds no code that nothing raises', () => {
    const used = codesInSource();
    const unknown = [...used].filter(([c]) => !isErrorCode(c)).map(([c, f]) => `${c} (${f})`);
    expect(unknown).toEqual([]);
    const unused = Object.keys(ERRORS).filter((c) => !used.has(c));
    expect(unused).toEqual([]);
  });

  it('matches the README: the per-code table of install-agent, and the exit-code table', () => {
    for (const [codes, exit] of tableAfter(/^What can go wrong, with its code/)) {
      for (const m of codes.matchAll(/`([a-z_.]+)`/g)) {
        expect(isErrorCode(m[1]), `${m[1]} is in the registry`).toBe(true);
        expect(ERRORS[m[1] as keyof typeof ERRORS].exit, `exit code of ${m[1]}`).toBe(Number(exit));
      }
    }
    const documented = new Set(tableAfter(/^## Exit codes/).map(([code]) => Number(code)));
    expect([...documented].sort((a, b) => a - b)).toEqual(Object.values(ExitCode).sort((a, b) => a - b));
    for (const [code, e] of Object.entries(ERRORS)) expect(documented.has(e.exit), `exit ${e.exit} of ${code} is documented`).toBe(true);
  });

  it('gives a code its exit code and status, and the status and hint cross the wire', () => {
    const e = new CmError('transfer.digest_mismatch', '/x: damaged', { hint: 'run it again' });
    expect(e.exitCode).toBe(ExitCode.failed);
    const wire = e.toServiceError();
    expect(wire.code).toBe(grpc.status.DATA_LOSS);
    const back = fromServiceError(wire as grpc.ServiceError);
    expect(back.code).toBe('transfer.digest_mismatch');
    expect(back.hint).toBe('run it again');
    expect(new CmError('plan.invalid', 'x').exitCode).toBe(ExitCode.usage);
    expect(new CmError('transfer.missing_owners', 'x').toServiceError().code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(new CmError('step.interrupted', 'x').exitCode).toBe(ExitCode.interrupted);
  });

  it('refuses an unregistered code at compile time', () => {
    const make = (): CmError =>
      // @ts-expect-error: not a registered code (tsc -p test/tsconfig.json fails if this compiles)
      new CmError('no.such_code', 'x');
    expect(typeof make).toBe('function');
  });

  it('keeps a code this version does not know as internal.unexpected with the peer\'s code', () => {
    const md = new grpc.Metadata();
    md.set('cmm-code', 'future.thing');
    const err = Object.assign(new Error('x'), { code: grpc.status.INTERNAL, details: 'from the future', metadata: md }) as grpc.ServiceError;
    const back = fromServiceError(err);
    expect(back.code).toBe('internal.unexpected');
    expect(back.details).toEqual({ peerCode: 'future.thing' });
  });
});
