/**
 * The move report as one self-contained HTML page: inline CSS and the inline SVG timeline,
 * no scripts, no fonts, no images, no links to fetch, so it opens offline and can be mailed
 * as one file. Every string from the journal is escaped; parts that were not recorded say so.
 */
import { clock, dateTime, duration, esc, formatBytes, int } from './format';
import type { MoveReport, ReportVerify } from './model';
import { outageCloseUp, renderTimelineSvg } from './svg-timeline';

const CSS = `
:root{--text:#1f2933;--muted:#6b7785;--line:#dfe3e8;--bg:#ffffff;--soft:#f5f7fa;--ok:#2b8a3e;--bad:#c92a2a;--warn:#b35c00;--accent:#3566a8}
*{box-sizing:border-box}
body{margin:0;background:var(--soft);color:var(--text);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:1040px;margin:0 auto;padding:28px 24px 40px}
header h1{margin:0 0 4px;font-size:24px;font-weight:650}
header p{margin:0;color:var(--muted)}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;font-size:12.5px;font-weight:600;vertical-align:middle;margin-left:8px}
.badge.complete{background:#e6f4ea;color:var(--ok)}.badge.failed{background:#fdecea;color:var(--bad)}
.badge.in_progress{background:#fff4e0;color:var(--warn)}.badge.rolled_back{background:#eceff3;color:var(--text)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(180px,1fr));gap:12px;margin:20px 0}
.card{background:var(--bg);border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.card .k{color:var(--muted);font-size:12.5px}.card .v{font-size:21px;font-weight:650;margin-top:2px}
.card .d{color:var(--muted);font-size:12.5px;margin-top:2px}
.v.ok{color:var(--ok)}.v.bad{color:var(--bad)}.v.warn{color:var(--warn)}.v.none{color:var(--muted);font-weight:500;font-size:16px}
section{background:var(--bg);border:1px solid var(--line);border-radius:10px;padding:16px 18px;margin:14px 0}
section h2{margin:0 0 10px;font-size:16px;font-weight:650}
.figure{overflow-x:auto}.figure svg{display:block;max-width:100%;height:auto}
.legend{display:flex;flex-wrap:wrap;gap:16px;color:var(--muted);font-size:12.5px;margin-top:6px}
.legend i{display:inline-block;width:14px;height:10px;border-radius:2px;margin-right:6px;vertical-align:-1px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12.5px;color:var(--muted);font-weight:600}
td.n,th.n{text-align:right;white-space:nowrap}
.t{white-space:nowrap}
tr:last-child td{border-bottom:none}
code{font:12.5px/1.4 ui-monospace,"DejaVu Sans Mono",monospace;overflow-wrap:anywhere}
h3{margin:18px 0 6px;font-size:14px;font-weight:650}
.none{color:var(--muted);font-style:italic}
.ok{color:var(--ok)}.bad{color:var(--bad)}
ul.warnings{margin:0;padding-left:20px}ul.warnings li{margin:3px 0}
ul.paths{margin:6px 0 0;padding-left:20px;max-height:260px;overflow:auto}
footer{color:var(--muted);font-size:12px;margin-top:18px}
@media print{body{background:#fff}section,.card{break-inside:avoid}}
`;

const NOT_RECORDED = '<p class="none">not recorded</p>';

function card(key: string, value: string, detail: string, cls = ''): string {
  return `<div class="card"><div class="k">${esc(key)}</div><div class="v ${cls}">${esc(value)}</div><div class="d">${esc(detail)}</div></div>`;
}

const OUTCOME: Record<MoveReport['outcome'], string> = { complete: 'complete', failed: 'failed', in_progress: 'not finished', rolled_back: 'rolled back' };

function cards(r: MoveReport): string {
  const out: string[] = [];
  const o = r.outage;
  if (o.seconds !== null) out.push(card('Mail off', duration(o.seconds), `${clock(o.started_at!)}–${clock(o.ended_at!)} UTC, until ${o.ended_by === 'bridge' ? 'the bridge was up' : 'step 6 put mail on'}`, o.seconds > 900 ? 'warn' : 'ok'));
  else if (o.started_at) out.push(card('Mail off', 'since ' + clock(o.started_at, false), 'not back on when this report was written', 'bad'));
  else out.push(card('Mail off', 'not yet', 'step 3 has not started', 'none'));
  // With the bridge, the DNS wait comes after mail is back on: say so, it is the point of it.
  const dnsAfter = r.dns_switched_at !== null && o.ended_at !== null && Date.parse(r.dns_switched_at) > Date.parse(o.ended_at);
  const dnsDetail = r.dns_switched_at ? `switched at ${clock(r.dns_switched_at)} UTC${dnsAfter ? ', after mail was back on' : ''}` : 'switch time not recorded';
  out.push(card('Waited for DNS', o.dns_wait_seconds !== null ? duration(o.dns_wait_seconds) : 'not recorded', dnsDetail, o.dns_wait_seconds !== null ? '' : 'none'));
  const moved = r.passes ?? r.steps.filter((s) => s.bytes !== null).map((s) => ({ bytes: s.bytes!, files: s.files ?? 0 }));
  if (moved.length > 0) {
    const bytes = moved.reduce((n, p) => n + p.bytes, 0);
    const files = moved.reduce((n, p) => n + p.files, 0);
    const unit = r.passes ? ['pass', 'passes'] : ['step', 'steps'];
    out.push(card('Data moved', formatBytes(bytes), `${int(files)} files in ${moved.length} ${unit[moved.length === 1 ? 0 : 1]}`));
  } else out.push(card('Data moved', 'not recorded', '', 'none'));
  const full = r.verify?.full ?? null;
  const quick = r.verify?.quick ?? null;
  const v = full ?? quick;
  if (!v) out.push(card('Verify', 'not recorded', '', 'none'));
  else if (v.state !== 'done') out.push(card(full ? 'Full verify' : 'Quick verify', v.state, full ? `run cmmigrate verify to finish it` : '', 'warn'));
  else out.push(card(full ? 'Full verify' : 'Quick verify', v.differences === 0 ? 'identical' : `${int(v.differences)} differ`, `${int(v.entries)} entries compared`, v.differences === 0 ? 'ok' : 'bad'));
  const w = r.warnings;
  out.push(card('Warnings', w ? String(w.length) : 'not recorded', w && w.length ? 'listed below' : '', !w ? 'none' : w.length ? 'warn' : 'ok'));
  return `<div class="cards">${out.join('')}</div>`;
}

function table(head: [string, boolean][], rows: string[][]): string {
  const th = head.map(([h, n]) => `<th${n ? ' class="n"' : ''}>${esc(h)}</th>`).join('');
  const body = rows.map((cells) => `<tr>${cells.map((c, i) => `<td${head[i]![1] ? ' class="n"' : ''}>${c}</td>`).join('')}</tr>`).join('\n');
  return `<table><thead><tr>${th}</tr></thead><tbody>${body}</tbody></table>`;
}

const opt = (v: string | number | null, f: (x: never) => string = String as never): string => (v === null ? '<span class="none">–</span>' : esc(f(v as never)));

function stepsTable(r: MoveReport): string {
  return table(
    [['Step', false], ['', false], ['State', false], ['Started (UTC)', false], ['Took', true], ['Moved', true], ['Attempts', true]],
    r.steps.map((s) => [
      `<span class="t">${esc(s.id === 'preflight' ? '–' : s.id)}</span>`,
      esc(s.title) + (s.error ? `<br><span class="bad">${esc(s.error.code)}: ${esc(s.error.message)}</span>` : ''),
      `<span class="${s.state === 'done' ? 'ok' : s.state === 'failed' ? 'bad' : 'none'}">${esc(s.state)}</span>`,
      `<span class="t">${opt(s.started_at, (t: string) => `${t.slice(0, 10)} ${clock(t)}`)}</span>`,
      opt(s.seconds, duration),
      s.bytes === null ? opt(null) : esc(`${formatBytes(s.bytes)} · ${int(s.files ?? 0)} files`),
      esc(String(s.attempts)),
    ]),
  );
}

function passesSection(r: MoveReport): string {
  if (!r.passes) return NOT_RECORDED;
  if (r.passes.length === 0) return '<p class="none">no passes</p>';
  return table(
    [['#', true], ['Phase', false], ['Started (UTC)', false], ['Bytes', true], ['Files', true], ['Took', true], ['Rate', true]],
    r.passes.map((p, i) => [
      esc(String(i + 1)),
      esc(p.phase),
      opt(p.started_at, (t: string) => clock(t)),
      esc(formatBytes(p.bytes)),
      esc(int(p.files)),
      esc(duration(p.seconds)),
      p.seconds > 0 ? esc(`${formatBytes(p.bytes / p.seconds)}/s`) : opt(null),
    ]),
  );
}

function verifyBlock(name: string, v: ReportVerify | null): string {
  if (!v) return `<tr><td>${esc(name)}</td><td colspan="5" class="none">not recorded</td></tr>`;
  const result = v.state !== 'done' ? `<span class="none">${esc(v.state)}</span>` : v.differences === 0 ? '<span class="ok">identical</span>' : `<span class="bad">${esc(int(v.differences))} path(s) differ</span>`;
  return `<tr><td>${esc(name)}</td><td class="n">${esc(int(v.entries))}</td><td class="n">${opt(v.from_records, int)}</td><td class="n">${opt(v.read, int)}</td><td class="n">${opt(v.seconds, duration)}</td><td>${result}</td></tr>`;
}

function differing(name: string, v: ReportVerify | null): string {
  if (!v || v.differing.length === 0) return '';
  const shown = v.differing.slice(0, 200);
  const more = v.differences - shown.length;
  return `<p><strong>${esc(name)}: differing paths</strong></p><ul class="paths">${shown.map((d) => `<li><code>${esc(d.path)}</code>${d.what ? ` <span class="none">${esc(d.what)}</span>` : ''}</li>`).join('')}${more > 0 ? `<li class="none">and ${esc(int(more))} more</li>` : ''}</ul>`;
}

function verifySection(r: MoveReport): string {
  if (!r.verify) return NOT_RECORDED;
  const { quick, full } = r.verify;
  return (
    `<table><thead><tr><th>Verify</th><th class="n">Entries compared</th><th class="n">From records</th><th class="n">Read again</th><th class="n">Took</th><th>Result</th></tr></thead><tbody>` +
    verifyBlock('Quick (step 4, inside the outage)', quick) +
    verifyBlock('Full (after mail was back on)', full) +
    `</tbody></table>` +
    differing('Quick verify', quick) +
    differing('Full verify', full)
  );
}

function warningsSection(r: MoveReport): string {
  if (!r.warnings) return NOT_RECORDED;
  if (r.warnings.length === 0) return '<p class="none">none</p>';
  return `<ul class="warnings">${r.warnings.map((w) => `<li>${w.at ? `<span class="none">${esc(clock(w.at))}</span> ` : ''}${w.step ? `<strong>step ${esc(w.step)}</strong>: ` : ''}${esc(w.message)}</li>`).join('')}</ul>`;
}

function cmdeploySection(r: MoveReport): string {
  if (!r.cmdeploy_calls) return NOT_RECORDED;
  if (r.cmdeploy_calls.length === 0) return '<p class="none">none</p>';
  return table(
    [['Step', false], ['Host', false], ['Command', false], ['Started (UTC)', false], ['Took', true], ['Exit', true]],
    r.cmdeploy_calls.map((c) => [
      opt(c.step),
      opt(c.side),
      `<code>${esc(c.command)}</code>`,
      opt(c.started_at, (t: string) => clock(t)),
      esc(duration(c.seconds)),
      c.exit_status === null ? '<span class="bad">killed</span>' : `<span class="${c.exit_status === 0 ? 'ok' : 'bad'}">${esc(String(c.exit_status))}</span>`,
    ]),
  );
}

function legend(r: MoveReport): string {
  const item = (colour: string, text: string, extra = ''): string => `<span><i style="background:${colour};${extra}"></i>${esc(text)}</span>`;
  return `<div class="legend">${[
    item('#3566a8', 'step'),
    r.steps.some((s) => s.state === 'failed') ? item('#c92a2a', 'failed step') : '',
    r.outage.started_at ? item('rgba(224,49,49,.18)', 'mail off (outage)', 'border:1px solid #e03131') : '',
    r.dns_switched_at ? item('#2b8a3e', 'authoritative DNS answers the new address', 'height:3px;vertical-align:3px') : '',
    r.bridge_up_at ? item('#7048e8', 'bridge on the old host up', 'height:3px;vertical-align:3px') : '',
    r.bridged_per_minute?.length ? item('#1c7ed6', 'bridged connections per minute') : '',
  ].join('')}</div>`;
}

function closeUp(r: MoveReport): string {
  const win = outageCloseUp(r);
  if (!win) return '';
  return `<h3>The outage, close up</h3><div class="figure">${renderTimelineSvg(r, win)}</div>`;
}

/** The report of one move as a complete HTML document. */
export function renderReportHtml(r: MoveReport): string {
  const title = `Move of ${r.mail_domain}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="generator" content="cmmigrate">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<header>
<h1>${esc(title)} <span class="badge ${esc(r.outcome)}">${esc(OUTCOME[r.outcome])}</span></h1>
<p>from <strong>${esc(r.old_host)}</strong> to <strong>${esc(r.new_host)}</strong> · started ${esc(dateTime(r.created_at))} · last change ${esc(dateTime(r.updated_at))}${r.rolled_back_at ? ` · rolled back ${esc(dateTime(r.rolled_back_at))}` : ''}</p>
</header>
${cards(r)}
<section><h2>Timeline</h2><div class="figure">${renderTimelineSvg(r)}</div>${legend(r)}${closeUp(r)}</section>
<section><h2>Steps</h2>${stepsTable(r)}</section>
<section><h2>Passes</h2>${passesSection(r)}</section>
<section><h2>Verify</h2>${verifySection(r)}</section>
<section><h2>Warnings</h2>${warningsSection(r)}</section>
<section><h2>cmdeploy calls</h2>${cmdeploySection(r)}</section>
${r.notes.length ? `<section><h2>Notes on this report</h2><ul class="warnings">${r.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul></section>` : ''}
<footer>Made by cmmigrate at ${esc(dateTime(r.generated_at))}${r.source ? ` from <code>${esc(r.source)}</code>` : ''}. Times are UTC.</footer>
</main>
</body>
</html>
`;
}
