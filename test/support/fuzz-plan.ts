/**
 * Seeded fuzzing of the controller's edges: plan files (controller/plan.ts loadPlan, in
 * process) and command lines (the built CLI, spawned). A plan must load or be refused with
 * a CmError; a command line must end with a documented exit code and a message, never a
 * stack trace or an `internal.unexpected` error.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { CmError } from '../../proto';
import { loadPlan } from '../../controller/plan';
import { CONTROLLER_CLI } from './harness';
import { Rng } from './rng';

export interface EdgeFigures {
  iterations: number;
  accepted: number;
  refused: number;
  codes: Record<string, number>;
  failures: string[];
}

const VALUES = ['""', '0', '-1', '99999999999', 'true', '[]', '{}', '"../../etc"', '"/"', '"127.0.0.1:0"', '"::1"', '"[::1]:70000"', '"mail.example.org"', '"_x"', '"1.2.3.4"', "'''multi\nline'''", '"\\u0000"', '1e400', 'nan', '"é"'];

function mutatePlan(r: Rng, text: string): string {
  const lines = text.split('\n');
  for (let k = r.int(1, 3); k > 0; k--) {
    const i = r.int(0, lines.length - 1);
    switch (r.int(0, 6)) {
      case 0:
        lines.splice(i, 1);
        break;
      case 1:
        lines.splice(i, 0, lines[r.int(0, lines.length - 1)]);
        break;
      case 2:
        if (lines[i].includes('=')) lines[i] = `${lines[i].split('=')[0]}= ${r.pick(VALUES)}`;
        break;
      case 3:
        lines.splice(i, 0, `${r.pick(['unknown_key', 'relay.x', '[extra]', '[old]', 'mailboxes_dir', 'owners.mailboxes'])} = ${r.pick(VALUES)}`);
        break;
      case 4: {
        const b = Buffer.from(lines[i]);
        if (b.length) b[r.int(0, b.length - 1)] = r.int(0, 255);
        lines[i] = b.toString('latin1');
        break;
      }
      case 5:
        lines[i] = r.pick(['[', ']', '= 1', 'a = ', '"', '[[old]]', '[owners.mailboxes]\nuser = "vmail"\ngroup = 1']);
        break;
      default:
        return lines.slice(0, i).join('\n') + lines[i].slice(0, r.int(0, lines[i].length));
    }
  }
  return lines.join('\n');
}

/** Load `iterations` damaged copies of `planFile` (written next to it). */
export async function fuzzPlan(opts: { seed: number; planFile: string; iterations: number }): Promise<EdgeFigures> {
  const f: EdgeFigures = { iterations: 0, accepted: 0, refused: 0, codes: {}, failures: [] };
  const text = await fs.readFile(opts.planFile, 'utf8');
  const file = path.join(path.dirname(opts.planFile), 'fuzzed-plan.toml');
  for (let i = 0; i < opts.iterations; i++) {
    const seed = opts.seed * 1_000_003 + i;
    const mutated = mutatePlan(new Rng(seed), text);
    await fs.writeFile(file, mutated);
    f.iterations++;
    try {
      await loadPlan(file);
      f.accepted++;
    } catch (err) {
      if (err instanceof CmError && err.code !== 'internal.unexpected') {
        f.refused++;
        f.codes[err.code] = (f.codes[err.code] ?? 0) + 1;
      } else f.failures.push(`plan seed ${seed}: ${(err as Error)?.stack ?? String(err)}\n--- plan ---\n${mutated}`);
    }
  }
  return f;
}

const COMMANDS = ['sync', 'verify', 'agents', 'init', 'install-agent', 'uninstall-agent', 'nonsense', '', '--help', '--version'];
const OPTIONS = ['--plan', '--phase', '--json', '--dry-run', '--max-delete', '--domain', '--old', '--new', '--old-agent', '--new-agent', '--stall-timeout', '--', '-x', '--plan='];
const ARGS = ['initial', 'final', 'middle', '', '-1', '0', '1e9', 'abc', '127.0.0.1:1', '[::1]:1', '../../etc/passwd', '\u00e9', 'x'.repeat(5000), 'old', 'new', '%s%n'];

/** Spawn the built CLI with `iterations` random command lines; `plans` are plan files to pick from (good and bad). */
export async function fuzzCli(opts: { seed: number; iterations: number; plans: string[]; cwd: string; parallel?: number }): Promise<EdgeFigures> {
  const f: EdgeFigures = { iterations: 0, accepted: 0, refused: 0, codes: {}, failures: [] };
  const lines: string[][] = [];
  for (let i = 0; i < opts.iterations; i++) {
    const r = new Rng(opts.seed * 1_000_003 + i);
    const cmd = r.pick(COMMANDS);
    const args = cmd ? [cmd] : [];
    // install-agent and uninstall-agent would reach for ssh with a usable plan: give them only broken ones.
    const plans = cmd.includes('install') ? opts.plans.slice(1) : opts.plans;
    if (r.chance(0.8)) args.push('--plan', r.pick(plans));
    if (cmd.includes('install')) args.push(r.pick(['old', 'new', 'both', '']));
    for (let k = r.int(0, 4); k > 0; k--) {
      const o = r.pick(OPTIONS);
      args.push(o);
      if (r.chance(0.7)) args.push(r.pick(ARGS));
    }
    lines.push(args);
  }
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < lines.length) {
      const args = lines[next++];
      const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [CONTROLLER_CLI, ...args], { cwd: opts.cwd, stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        child.stderr.on('data', (d) => (err += d));
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        child.on('close', (c) => (clearTimeout(timer), resolve({ code: c, stderr: err })));
      });
      f.iterations++;
      const shown = JSON.stringify(args).slice(0, 300);
      if (code === null || ![0, 1, 2, 3].includes(code)) f.failures.push(`cmmigrate ${shown}: exit ${code}\n${stderr.slice(0, 2000)}`);
      else if (/internal\.unexpected|\n\s+at .+\(.*:\d+:\d+\)/.test(stderr)) f.failures.push(`cmmigrate ${shown}: an unexpected error\n${stderr.slice(0, 2000)}`);
      else if (code === 0) f.accepted++;
      else {
        f.refused++;
        const c = /\[([a-z_]+\.[a-z_.]+)\]/.exec(stderr)?.[1] ?? (code === 2 ? 'usage (commander)' : 'other');
        f.codes[c] = (f.codes[c] ?? 0) + 1;
        if (!stderr.trim()) f.failures.push(`cmmigrate ${shown}: exit ${code} without a message`);
      }
    }
  };
  await Promise.all(Array.from({ length: opts.parallel ?? 4 }, worker));
  return f;
}
