/**
 * Turn the `RELIABILITY {...}` lines that the fault, hostile-input, peer, secret and fuzz
 * tests print into the markdown of the table in docs/reliability.md, so that its figures
 * are those of a real run:
 *   npm test 2>&1 | tee test.log
 *   npm run fuzz 2>&1 | tee fuzz.log          (optional: the longer fuzz figures)
 *   node dist-test/test/bench/reliability.js --doc docs/reliability.md test.log fuzz.log
 * prints the text and puts it in the page's section (between its heading and the paragraph
 * that says how the table is made); without --doc it only prints it.
 * test/readme-figures.test.ts checks the section. A row with no observation behind it says
 * so, a row whose test file failed in the log is printed as failed, and either makes the
 * script exit 1.
 */
import * as fs from 'node:fs';
import { takeDocArg } from './readme-block';

type Fig = Record<string, unknown> & { name?: string; fuzz?: string };

function read(files: string[]): { tests: Fig[]; fuzz: Fig[]; passed: string; failed: Set<string> } {
  const tests: Fig[] = [];
  const fuzz: Fig[] = [];
  const failed = new Set<string>();
  let passed = '';
  for (const f of files) {
    // eslint-disable-next-line no-control-regex
    const text = fs.readFileSync(f, 'utf8').replace(/\x1b\[[0-9;]*m/g, '');
    for (const m of text.matchAll(/RELIABILITY (\{.*\})/g)) tests.push(JSON.parse(m[1]) as Fig);
    for (const line of text.split('\n')) if (line.startsWith('{"fuzz"')) fuzz.push(JSON.parse(line) as Fig);
    passed ||= /Tests\s+(.*\(\d+\))/.exec(text)?.[1]?.trim() ?? '';
    for (const m of text.matchAll(/FAIL\s+(test\/[\w.-]+\.test\.ts)/g)) failed.add(m[1]);
  }
  return { tests, fuzz, passed, failed };
}

const sum = (figs: Fig[], key: string): number => figs.reduce((n, f) => n + Number(f[key] ?? 0), 0);

/** The heading that starts the section and the paragraph that follows the generated part. */
export const SECTION_START = '## Reliability: what was tried, and the result';
export const SECTION_AFTER = 'The table is made from a real run';

/** `readme` (docs/reliability.md's text) with its generated Reliability part replaced by `section`. */
export function withSection(readme: string, section: string): string {
  const a = readme.indexOf(SECTION_START);
  const b = readme.indexOf(SECTION_AFTER, a);
  if (a < 0 || b < 0) throw new Error(`the page has no "${SECTION_START}" section ending before "${SECTION_AFTER}" (the table lives in docs/reliability.md)`);
  return readme.slice(0, a) + section + '\n' + readme.slice(b);
}

function main(): void {
  const args = process.argv.slice(2);
  const readme = takeDocArg(args);
  const { tests, fuzz, passed, failed } = read(args);
  // A row's figures must come from observations of this run, and its test must have passed.
  const problems: string[] = [];
  const row = (file: string, observed: number, what: string, tried: string, result: string): string => {
    if (!(observed > 0)) problems.push(`no observations for "${what.slice(0, 60)}" (${file})`);
    if (failed.has(file)) problems.push(`${file} failed in this run`);
    return `| ${what} | ${tried} | ${failed.has(file) ? `**FAILED in this run** (${file})` : observed > 0 ? result : '**no observations**'} |`;
  };
  const of = (name: string): Fig[] => tests.filter((t) => t.name === name);
  const kills = of('kills')[0] ?? {};
  const cuts = of('cut');
  const stalls = of('stall');
  const full = of('disk-full');
  const changed = of('source-changed');
  const load = of('load')[0] ?? {};
  const modes = of('modes')[0] ?? {};
  const grep = of('log-grep')[0] ?? {};
  const fp = of('fuzz-pull')[0] ?? {};
  const fpk = of('fuzz-packed')[0] ?? {};
  const fplan = of('fuzz-plan')[0] ?? {};
  const fcli = of('fuzz-cli')[0] ?? {};
  const hostile = of('hostile')[0] ?? {};
  const tiny = of('tiny-entries')[0] ?? {};
  const peers = of('peers')[0] ?? {};
  const roles = of('roles')[0] ?? {};
  const runKills = of('run-kills')[0] ?? {};
  const stepFaults = of('run-step-faults')[0] ?? {};
  const faults = Number(kills.points ?? 0) + cuts.length + stalls.length + full.length + changed.length + Number(runKills.points ?? 0) + Number(stepFaults.faults ?? 0);
  const out: string[] = [];
  out.push('## Reliability: what was tried, and the result');
  out.push('');
  out.push(`Figures from one run of the test suite (${passed || 'see the log'}), on loopback with real agents, real TLS and real files; every fault is followed by a rerun that finishes and a \`cmmigrate verify\` that passes, with no torn file, no temp file left and no message twice in a maildir.`);
  out.push('');
  out.push('| What | Tried | Result |');
  out.push('| --- | ---: | --- |');
  out.push(row('test/faults.test.ts', Number(kills.points ?? 0), 'SIGKILL of the old agent, the new agent and the controller at byte-exact points of the initial and final passes (test/faults.test.ts)', `${kills.points ?? 0} (${kills.initial ?? 0} initial, ${kills.final ?? 0} final; ${kills.old ?? 0} old, ${kills.new ?? 0} new, ${kills.controller ?? 0} controller)`, 'resumed and verified'));
  out.push(row('test/run-kill.test.ts', Number(runKills.points ?? 0), 'SIGKILL of the controller during `cmmigrate run`, at the start and the end of every step, one after the other in one move (test/run-kill.test.ts)', `${runKills.points ?? 0}`, 'each rerun continued where the journal said; cmdeploy never called out of order or with wrong stages; finished and verified'));
  out.push(row('test/run.test.ts', Number(stepFaults.faults ?? 0), 'A fault at each step of `cmmigrate run`: cmdeploy exits 1, mail still running after --disable-mail, verify fails, DNS never switches, a port closed after activate (test/run.test.ts)', `${stepFaults.faults ?? 0} (steps ${stepFaults.steps ?? '-'})`, 'a clear error naming step and host, the journal shows the failed step; the rerun after the fix continued there and finished'));
  out.push(row('test/faults.test.ts', cuts.length, 'Connection between the agents cut (TCP reset) mid-stream', `${cuts.length}`, `failed within ${Math.max(0, ...cuts.map((c) => Number(c.failedInMs)))} ms, resumed, verified`));
  out.push(row('test/faults.test.ts', stalls.length, 'Stalled peer (proxy stops forwarding), --stall-timeout 3 s', `${stalls.length}`, `failed within ${Math.max(0, ...stalls.map((c) => Number(c.failedInMs)))} ms, resumed, verified`));
  out.push(row('test/disk-full.test.ts', full.length, 'Disk full on the new host (tmpfs), freed by deleting a filler and by growing the filesystem', `${full.length}`, '`transfer.disk_full` naming host and file; committed files intact; resumed, verified'));
  out.push(row('test/faults.test.ts', changed.length, 'A source file changed during the strict final pass', `${changed.length}`, '`transfer.source_changed` naming it, nothing torn; rerun verified'));
  out.push(row('test/hostile.test.ts', Number(hostile.inputs ?? 0), 'Hostile sender inputs beyond test/security.test.ts (test/hostile.test.ts)', `${hostile.inputs ?? 0}`, 'refused with a clear error or kept inside the root; nothing outside the root, no temp file'));
  out.push(row('test/hostile.test.ts', Number(tiny.entries ?? 0), 'A huge number of tiny entries', `${tiny.entries ?? 0} entries`, `transferred; new agent peak RSS ${tiny.agentPeakRssMiB ?? '?'} MiB`));
  out.push(row('test/peers.test.ts', Number(peers.refused ?? 0), 'Peers of the right CA in the wrong shape (expired, not yet valid, controller cert as agent, agent cert as controller)', `${peers.refused ?? 0}`, 'all refused'));
  out.push(row('test/roles.test.ts', Number(roles.refused ?? 0), 'Peers of the right CA, right SAN and key usage, wrong role (server side and both client sides)', `${roles.refused ?? 0}`, 'refused by the role check itself (`auth.wrong_role` on the server side, the role message on the client side)'));
  out.push(row('test/peers.test.ts', Number(load.connections ?? 0), 'Bogus connections during a pass (garbage, TLS without certificate, half-open, slow-loris)', `${load.connections ?? 0}`, 'pass completed and verified'));
  out.push(row('test/fuzz.test.ts', Number(fp.iterations ?? 0), `Fuzz: receiver's listing and tar parsing, CI run (seed ${fp.seed ?? '?'})`, `${fp.iterations ?? 0}`, `${fp.succeeded ?? 0} applied, ${fp.refused ?? 0} refused with a CmError, ${fp.undecodable ?? 0} not decodable; ${fp.failures ?? 0} problems`));
  out.push(row('test/fuzz.test.ts', Number(fpk.iterations ?? 0), `Fuzz: receiver's packed listing (since protocol 2), its bytes damaged, CI run (seed ${fpk.seed ?? '?'})`, `${fpk.iterations ?? 0}`, `${fpk.succeeded ?? 0} applied, ${fpk.refused ?? 0} refused with a CmError (${fpk.protocol ?? 0} of them \`wire.protocol\`); ${fpk.failures ?? 0} problems`));
  if (fuzz.length) {
    const p = fuzz.filter((f) => f.fuzz === 'pull');
    const k = fuzz.filter((f) => f.fuzz === 'packed');
    const q = fuzz.filter((f) => f.fuzz === 'plan');
    out.push(`| Fuzz: receiver, \`npm run fuzz\` (${p.length} seeds × ${p[0]?.seconds ?? '?'} s) | ${sum(p, 'iterations')} | ${sum(p, 'succeeded')} applied, ${sum(p, 'refused')} refused, ${sum(p, 'undecodable')} not decodable; ${sum(p, 'failures')} problems |`);
    if (k.length) {
      const protocol = k.reduce((n, f) => n + Number((f.codes as Record<string, number> | undefined)?.['wire.protocol'] ?? 0), 0);
      out.push(`| Fuzz: receiver's packed listing, \`npm run fuzz\` (${k.length} seeds × ${k[0]?.seconds ?? '?'} s) | ${sum(k, 'iterations')} | ${sum(k, 'succeeded')} applied, ${sum(k, 'refused')} refused (${protocol} of them \`wire.protocol\`); ${sum(k, 'failures')} problems |`);
    }
    out.push(`| Fuzz: plan files, \`npm run fuzz\` | ${sum(q, 'iterations')} | ${sum(q, 'accepted')} loaded, ${sum(q, 'refused')} refused with a CmError; ${sum(q, 'failures')} problems |`);
  }
  out.push(row('test/fuzz.test.ts', Number(fplan.iterations ?? 0), 'Fuzz: plan files, CI run', `${fplan.iterations ?? 0}`, `${fplan.accepted ?? 0} loaded, ${fplan.refused ?? 0} refused with a CmError; ${fplan.failures ?? 0} problems`));
  out.push(row('test/fuzz.test.ts', Number(fcli.iterations ?? 0), 'Fuzz: command lines of the built CLI', `${fcli.iterations ?? 0}`, `documented exit codes and messages; ${fcli.failures ?? 0} problems`));
  out.push(row('test/secrets.test.ts', Number(modes.observations ?? 0), 'Modes of every file seen on the new host during passes (temp files included)', `${modes.observations ?? 0} observations, ${modes.temps ?? 0} of temp files`, 'never more readable than on the old host'));
  out.push(row('test/secrets.test.ts', Number(grep.outputs ?? 0), `Logs and --json output grepped for ${grep.markers ?? 0} planted secrets (DKIM, ACME and TLS keys, password hashes, passdb, a message)`, `${grep.outputs ?? 0} outputs, ${grep.bytes ?? 0} bytes`, `${grep.leaks ?? 0} leaks`));
  out.push('');
  out.push(`In all: ${faults} faults injected, ${Number(hostile.inputs ?? 0) + Number(peers.refused ?? 0) + Number(roles.refused ?? 0) + Number(load.connections ?? 0)} hostile inputs and peers, ${Number(fp.iterations ?? 0) + Number(fpk.iterations ?? 0) + Number(fplan.iterations ?? 0) + Number(fcli.iterations ?? 0) + sum(fuzz, 'iterations')} fuzz iterations.${problems.length ? ' **This run had problems: ' + problems.join('; ') + '.**' : ' Nothing was lost, duplicated or exposed.'}`);
  out.push('');
  out.push('Bugs these tests found (fixed): a file committed just before the receiving agent was killed had no record in the journal, so a later pass kept it as foreign and, after a Maildir rename, showed the message twice; disk full was reported as `internal.unexpected` with neither host nor path; damaged tar headers came out as `internal.unexpected` instead of `wire.protocol`; a record that an action under way appended after a pass was stopped (a hard link or rename it awaited) was dropped, so the next pass kept that file as not written by cmmigrate (seen once in five full runs).');
  const text = out.join('\n') + '\n';
  process.stdout.write(text);
  if (readme) fs.writeFileSync(readme, withSection(fs.readFileSync(readme, 'utf8'), text));
  if (problems.length) {
    process.stderr.write(`reliability: ${problems.length} row(s) without a passing observation:\n  ${problems.join('\n  ')}\n`);
    process.exitCode = 1;
  }
}

if (typeof require !== 'undefined' && require.main === module) main();
