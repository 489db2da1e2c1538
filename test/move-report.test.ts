/**
 * The move report (issue 14, point 5): the model read from a real journal file, the HTML's
 * escaping and its "not recorded" parts, the atomic write, and the page in a real headless
 * browser (Debian's chromium through playwright-core): it renders one bar per step and the
 * outage band, and fetches nothing from the network.
 */
import { promises as fsp } from 'node:fs';
import { Writable } from 'node:stream';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { CmError } from '../proto/errors';
import { Journal, type JournalData } from '../controller/run/journal';
import { buildMoveReport, loadMoveReport, renderReportHtml, renderTimelineSvg, reportJson, runReport, writeReport, type JournalCore } from '../controller/move-report';
import { createReporter } from '../controller/report';
import { timeAxis } from '../controller/move-report/svg-timeline';
import { failure } from './support/expect-error';
import { SAMPLE_NOW, sampleExtras, sampleJournal } from './support/sample-move';

const CHROMIUM = '/usr/bin/chromium';
const HOSTILE = `<script>alert("pwned")</script><img src=x onerror=alert(1)>`;

let dir: string;
beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-move-report-'));
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

async function stateDir(name: string): Promise<string> {
  const d = path.join(dir, name);
  await fsp.mkdir(d, { recursive: true });
  return d;
}

/** How often `needle` occurs in `text`. */
function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

describe('report model', () => {
  it('reads a journal written by the run journal itself, with every optional part not recorded', async () => {
    const sd = await stateDir('real-journal');
    const j = await Journal.open(sd, { mailDomain: 'chat.example.org', oldHost: 'old.example.org', newHost: 'new.example.net' });
    j.start('preflight');
    j.finish('preflight');
    j.start('1');
    j.finish('1', { bytes: 123_456, files: 78 });
    j.start('2');
    j.fail('2', { code: 'cmdeploy.failed', message: 'cmdeploy exited with status 1' });

    const r = await loadMoveReport(sd);
    expect(r.source).toBe(path.join(sd, 'journal.json'));
    expect(r.outcome).toBe('failed');
    expect(r.steps.map((s) => [s.id, s.state])).toEqual([
      ['preflight', 'done'],
      ['1', 'done'],
      ['2', 'failed'],
      ['3', 'pending'],
      ['4', 'pending'],
      ['5', 'pending'],
      ['6', 'pending'],
    ]);
    expect(r.steps[1]).toMatchObject({ bytes: 123_456, files: 78, attempts: 1 });
    expect(r.steps[2]!.error).toEqual({ code: 'cmdeploy.failed', message: 'cmdeploy exited with status 1' });
    expect(r.outage).toEqual({ started_at: null, ended_at: null, ended_by: null, seconds: null, dns_wait_seconds: null });
    for (const k of ['dns_switched_at', 'bridge_up_at', 'bridged_per_minute', 'passes', 'verify', 'warnings', 'cmdeploy_calls'] as const) expect(r[k]).toBeNull();
    expect(r.notes).toEqual([]);

    const html = renderReportHtml(r);
    // Passes, verify, warnings, cmdeploy calls, and the bridged-connections chart.
    expect(count(html, 'not recorded')).toBeGreaterThanOrEqual(5);
    expect(html).toContain('cmdeploy.failed: cmdeploy exited with status 1');
    // One bar per step that ran (preflight, 1, 2), none for the pending ones, no outage band yet.
    expect(count(html, 'data-bar=')).toBe(3);
    expect(html).not.toContain('data-outage');
  });

  it('ends the outage when the bridge is up, when recorded; otherwise at the end of step 6', () => {
    const withBridge = buildMoveReport(sampleJournal(), sampleExtras(), { now: SAMPLE_NOW });
    expect(withBridge.outcome).toBe('complete');
    expect(withBridge.outage).toMatchObject({ started_at: '2026-11-30T08:48:05.000Z', ended_at: '2026-11-30T08:51:52.000Z', ended_by: 'bridge', seconds: 227 });
    expect(withBridge.bridged_per_minute).toHaveLength(53);
    expect(renderReportHtml(withBridge)).toContain('switched at 09:04:08 UTC, after mail was back on');

    const { bridge_up_at: _unused, ...noBridge } = sampleExtras();
    const plain = buildMoveReport(sampleJournal(), noBridge, { now: SAMPLE_NOW });
    expect(plain.outage).toMatchObject({ ended_at: '2026-11-30T08:51:48.000Z', ended_by: 'step 6', seconds: 223 });

    // Mail off and not back on: the band stays open to the end of the picture.
    const j = sampleJournal();
    j.steps['6'] = { state: 'failed', started_at: '2026-11-30T08:50:15.000Z', ended_at: '2026-11-30T08:51:00.000Z', seconds: 45, marks: {}, attempts: 1, error: { code: 'step.service_not_active', message: 'dovecot did not start' } };
    j.steps['5'] = { state: 'pending', marks: {}, attempts: 0 };
    j.outage = { started_at: j.outage.started_at };
    const open = buildMoveReport(j, {}, { now: new Date('2026-11-30T08:52:00.000Z') });
    expect(open.outcome).toBe('failed');
    expect(open.outage).toMatchObject({ started_at: '2026-11-30T08:48:05.000Z', ended_at: null, seconds: null });
    const html = renderReportHtml(open);
    expect(html).toContain('data-outage="open"');
    expect(html).toContain('not back on');
  });

  it('takes extras from the journal itself too, the explicit extras winning', () => {
    const journal = { ...sampleJournal(), warnings: ['from the journal'], dns_switched_at: '2026-11-30T09:00:00.000Z' };
    const r = buildMoveReport(journal, { warnings: ['given'] }, { now: SAMPLE_NOW });
    expect(r.warnings).toEqual([{ message: 'given', at: null, step: null }]);
    expect(r.dns_switched_at).toBe('2026-11-30T09:00:00.000Z');
  });

  it('shows an unreadable optional part as not recorded, with a note, instead of failing', () => {
    const r = buildMoveReport(sampleJournal(), { passes: 'lots' as never, verify: { full: { entries: -3 } } as never }, { now: SAMPLE_NOW });
    expect(r.passes).toBeNull();
    expect(r.verify).toBeNull();
    expect(r.notes).toHaveLength(2);
    const notes = [...r.notes].sort();
    expect(notes[0]).toMatch(/^passes could not be read/);
    expect(notes[1]).toMatch(/^verify could not be read \(full\.entries/);
    const html = renderReportHtml(r);
    expect(html).toContain('Notes on this report');
    expect(html).toContain('passes could not be read');
  });

  it('refuses a bad journal with a CmError naming the file', async () => {
    const missing = await stateDir('missing');
    const e1 = await failure(loadMoveReport(missing));
    expect(e1.code).toBe('report.no_journal');
    expect(e1.message).toContain(path.join(missing, 'journal.json'));

    const torn = await stateDir('torn');
    await fsp.writeFile(path.join(torn, 'journal.json'), '{"version": 1, "mail_dom');
    const e2 = await failure(loadMoveReport(torn));
    expect(e2.code).toBe('report.journal_invalid');
    expect(e2.message).toContain(path.join(torn, 'journal.json'));
    expect(e2.hint).toBeTruthy();

    const other = await stateDir('other');
    const { steps: _steps, ...noSteps } = sampleJournal();
    await fsp.writeFile(path.join(other, 'journal.json'), JSON.stringify(noSteps));
    const e3 = await failure(loadMoveReport(other));
    expect(e3.code).toBe('report.journal_invalid');
    expect(e3.message).toContain(path.join(other, 'journal.json'));
    expect(e3.message).toContain('steps');

    expect(() => buildMoveReport({ ...sampleJournal(), created_at: 'yesterday' })).toThrow(CmError);
  });

  it('gives the same data as JSON, with null for every part not recorded', () => {
    const r = buildMoveReport(sampleJournal(), sampleExtras(), { now: SAMPLE_NOW });
    const back = JSON.parse(reportJson(r)) as Record<string, unknown>;
    expect(back).toEqual(JSON.parse(JSON.stringify(r)));
    expect(back.format).toBe('cmmigrate-move-report/1');
    const bare = JSON.parse(reportJson(buildMoveReport(sampleJournal(), {}, { now: SAMPLE_NOW }))) as Record<string, unknown>;
    expect(bare.passes).toBeNull();
    expect(bare.cmdeploy_calls).toBeNull();
  });

  it("accepts the run journal's own type", () => {
    // Compile-time: JournalData (controller/run/journal.ts) must stay assignable to what the report reads.
    const d: JournalData = sampleJournal();
    const core: JournalCore = d;
    expect(buildMoveReport(core).mail_domain).toBe('chat.example.org');
  });
});

describe('report HTML', () => {
  it('escapes every string taken from the data', () => {
    const j = { ...sampleJournal(), mail_domain: `chat.example.org"><svg onload=alert(1)>`, old_host: HOSTILE };
    j.steps['3'] = { ...j.steps['3']!, state: 'failed', error: { code: 'x<y', message: HOSTILE } };
    const extras = sampleExtras();
    extras.warnings = [HOSTILE, { message: 'a & b', step: `<b>4</b>` }];
    extras.verify = { full: { entries: 3, differences: 1, differing: [{ path: `</code></svg>${HOSTILE}`, what: `<i>size</i>` }] } };
    extras.cmdeploy_calls = [{ command: `scripts/cmdeploy run --ssh-host '<new>' && echo "$X"`, exit_status: 1, seconds: 3 }];
    extras.passes = [{ phase: `</td>${HOSTILE}`, bytes: 1, files: 1, seconds: 1 }];
    const html = renderReportHtml(buildMoveReport(j, extras, { now: SAMPLE_NOW }));
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/<img/i);
    expect(html).not.toMatch(/<svg onload/i);
    expect(html).not.toMatch(/<b>4<\/b>|<i>size<\/i>/);
    expect(html).toContain('&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;');
    expect(html).toContain('a &amp; b');
    expect(html).toContain(`--ssh-host &#39;&lt;new&gt;&#39; &amp;&amp; echo &quot;$X&quot;`);
    // The only elements are the page's own: one svg per picture, no script at all.
    expect(count(html, '<svg')).toBe(2);
  });

  it('cuts a long pause out of the time axis and marks it', () => {
    const j = sampleJournal();
    // Steps 1 and 2 one day, the rest the next.
    const later = (iso: string): string => new Date(Date.parse(iso) + 20 * 3600_000).toISOString();
    for (const id of ['3', '4', '5', '6']) {
      const s = j.steps[id]!;
      j.steps[id] = { ...s, started_at: later(s.started_at!), ended_at: later(s.ended_at!) };
    }
    j.outage = { started_at: later(j.outage.started_at!), ended_at: later(j.outage.ended_at!) };
    const svg = renderTimelineSvg(buildMoveReport(j, {}, { now: new Date(later('2026-11-30T09:05:00.000Z')) }));
    expect(count(svg, 'data-gap')).toBe(1);
    expect(svg).toContain('20h');

    const axis = timeAxis([
      [0, 60_000],
      [86_400_000, 86_460_000],
    ]);
    expect(axis.segments).toHaveLength(2);
    // Each minute of work gets about half of the width.
    expect(axis.x(60_000) - axis.x(0)).toBeCloseTo(axis.x(86_460_000) - axis.x(86_400_000), 5);
  });

  it('is written atomically as report.html in the state dir, readable only by its owner', async () => {
    const sd = await stateDir('write');
    const file = writeReport(sd, sampleJournal(), sampleExtras(), SAMPLE_NOW);
    expect(file).toBe(path.join(sd, 'report.html'));
    expect(await fsp.readFile(file, 'utf8')).toBe(renderReportHtml(buildMoveReport(sampleJournal(), sampleExtras(), { source: path.join(sd, 'journal.json'), now: SAMPLE_NOW })));
    expect((await fsp.stat(file)).mode & 0o777).toBe(0o600);
    expect(await fsp.readdir(sd)).toEqual(['report.html']);
    // A second write replaces it whole.
    writeReport(sd, sampleJournal(), {}, SAMPLE_NOW);
    expect(await fsp.readFile(file, 'utf8')).toContain('not recorded');
    expect(await fsp.readdir(sd)).toEqual(['report.html']);
  });
});

/** The controller's real output, writing into strings. */
function captured(json: boolean) {
  const text = { stdout: '', stderr: '' };
  const sink = (k: keyof typeof text): NodeJS.WriteStream =>
    Object.assign(
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          text[k] += chunk.toString();
          cb();
        },
      }),
      { isTTY: false },
    ) as unknown as NodeJS.WriteStream;
  return { text, out: createReporter(json, { stderr: sink('stderr'), stdout: sink('stdout') }) };
}

describe('runReport (what `cmmigrate report --plan F` does)', () => {
  async function planWithJournal(name: string, journal?: unknown): Promise<{ plan: string; state: string }> {
    const d = await stateDir(name);
    const state = path.join(d, 'state');
    await fsp.mkdir(state, { recursive: true });
    const plan = path.join(d, 'plan.toml');
    await fsp.writeFile(plan, 'mail_domain = "chat.example.org"\nstate_dir = "state"\n[old]\nhost = "old.example.org"\n[new]\nhost = "new.example.net"\n');
    if (journal) await fsp.writeFile(path.join(state, 'journal.json'), JSON.stringify(journal, null, 2));
    return { plan, state };
  }

  it('writes report.html in the state dir and prints its path and a summary', async () => {
    // Extras recorded in the journal itself are shown as well.
    const { plan, state } = await planWithJournal('cmd', { ...sampleJournal(), ...sampleExtras() });
    const { text, out } = captured(false);
    const r = await runReport({ plan }, out);
    expect(r.path).toBe(path.join(state, 'report.html'));
    expect(text.stdout).toContain(`report: ${r.path}\n`);
    expect(text.stdout).toContain('mail was off 3m47s; the hosts match, 3 warning(s)');
    const html = await fsp.readFile(r.path, 'utf8');
    expect(html).toContain('Full verify');
    expect(count(html, 'data-minute=')).toBe(53);
  });

  it('prints the same data as one JSON object with --json', async () => {
    const { plan, state } = await planWithJournal('cmd-json', sampleJournal());
    const { text, out } = captured(true);
    await runReport({ plan }, out, { passes: sampleExtras().passes });
    const lines = text.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const obj = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(obj).toMatchObject({ path: path.join(state, 'report.html'), format: 'cmmigrate-move-report/1', mail_domain: 'chat.example.org', outcome: 'complete', verify: null });
    expect(obj.passes).toHaveLength(4);
  });

  it('says there is nothing to report before the first run', async () => {
    const { plan, state } = await planWithJournal('cmd-none');
    const err = await failure(runReport({ plan }, captured(false).out));
    expect(err.code).toBe('report.no_journal');
    expect(err.message).toContain(path.join(state, 'journal.json'));
  });
});

describe('report in a real browser', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });

  /** Opens `file` offline: every request is recorded, every one but the file itself aborted. */
  async function open(file: string) {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    const url = pathToFileURL(file).href;
    const requests: string[] = [];
    const dialogs: string[] = [];
    const errors: string[] = [];
    page.on('request', (req) => requests.push(req.url()));
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    page.on('pageerror', (e) => errors.push(e.message));
    await page.route('**/*', (route) => (route.request().url() === url ? route.continue() : route.abort()));
    await page.goto(url, { waitUntil: 'load' });
    return { page, url, requests, dialogs, errors };
  }

  it('renders one bar per step, the outage band and the markers, and fetches nothing', async () => {
    const sd = await stateDir('browser');
    const written = writeReport(sd, sampleJournal(), sampleExtras(), SAMPLE_NOW);
    // The page forbids every fetch in its Content-Security-Policy; the copy opened here has
    // that line removed, so that this test sees what the page itself would fetch.
    const html = await fsp.readFile(written, 'utf8');
    const csp = /<meta http-equiv="Content-Security-Policy" content="default-src 'none';[^>]*>\n/;
    expect(html).toMatch(csp);
    const file = path.join(sd, 'report-without-csp.html');
    await fsp.writeFile(file, html.replace(csp, ''));
    const { page, url, requests, errors } = await open(file);
    try {
      const move = page.locator('svg[data-view="move"]');
      await expect.poll(() => move.count()).toBe(1);
      const bars = move.locator('[data-bar]');
      expect(await bars.count()).toBe(7);
      // Drawn, not just present: every bar has a size on the screen.
      const ys: Record<string, number> = {};
      for (let i = 0; i < 7; i++) {
        const box = (await bars.nth(i).boundingBox())!;
        expect(box.width).toBeGreaterThan(0);
        expect(box.height).toBeGreaterThan(0);
        ys[(await bars.nth(i).getAttribute('data-bar'))!] = box.y;
      }
      // With --bridge, step 6 ran before step 5: the rows follow the clock.
      expect(Object.keys(ys).sort()).toEqual(['1', '2', '3', '4', '5', '6', 'preflight']);
      expect(ys['6']).toBeLessThan(ys['5']!);
      const band = move.locator('[data-outage="closed"] rect');
      expect(await band.count()).toBe(1);
      expect((await band.boundingBox())!.width).toBeGreaterThan(5);
      expect(await move.locator('[data-outage]').textContent()).toContain('Mail off 3m47s');
      expect(await move.locator('[data-marker="dns"]').count()).toBe(1);
      expect(await move.locator('[data-marker="bridge"]').count()).toBe(1);
      expect(await move.locator('[data-minute]').count()).toBe(53);
      // The outage is narrow beside a 40-minute initial sync: a close-up shows its steps.
      expect(await page.locator('svg[data-view="close-up"] [data-bar]').count()).toBe(4);
      expect(await page.locator('table').count()).toBe(4);
      await page.screenshot({ path: '/tmp/move-report.png', fullPage: true });
      expect(requests).toEqual([url]);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 60_000);

  it('runs nothing of a hostile journal and still fetches nothing', async () => {
    const sd = await stateDir('browser-hostile');
    const j = { ...sampleJournal(), mail_domain: `x"><img src="http://192.0.2.1/x.png">`, new_host: HOSTILE };
    const extras = sampleExtras();
    extras.warnings = [HOSTILE, `<link rel="stylesheet" href="https://192.0.2.1/s.css">`];
    extras.verify = { full: { entries: 1, differing: [`<iframe src="https://192.0.2.1/">`] } };
    const file = writeReport(sd, j, extras, SAMPLE_NOW);
    const { page, url, requests, dialogs, errors } = await open(file);
    try {
      expect(await page.locator('script, img, iframe, link').count()).toBe(0);
      expect(await page.locator('ul.warnings li').first().textContent()).toContain('<script>alert("pwned")</script>');
      expect(await page.locator('svg[data-view="move"] [data-bar]').count()).toBe(7);
      expect(dialogs).toEqual([]);
      expect(errors).toEqual([]);
      expect(requests).toEqual([url]);
    } finally {
      await page.close();
    }
  }, 60_000);

  it('draws a timeline that is well-formed SVG on its own (escaping holds in XML too)', async () => {
    const sd = await stateDir('browser-svg');
    const extras = sampleExtras();
    extras.warnings = [HOSTILE];
    const j = { ...sampleJournal(), mail_domain: `a&b<c>"d'\u0001` };
    const svgFile = path.join(sd, 'timeline.svg');
    await fsp.writeFile(svgFile, renderTimelineSvg(buildMoveReport(j, extras, { now: SAMPLE_NOW })));
    const { page, requests } = await open(svgFile);
    try {
      expect(await page.locator('parsererror').count()).toBe(0);
      expect(await page.locator(':root').evaluate((e) => (e as { localName: string }).localName)).toBe('svg');
      expect(await page.locator('[data-bar]').count()).toBe(7);
      expect(requests).toHaveLength(1);
    } finally {
      await page.close();
    }
  }, 60_000);
});
