/**
 * The move as one SVG picture: a bar per step on a time axis, the outage window as a shaded
 * band with its length, markers for the DNS switch and the bridge, and bridged connections
 * per minute as a small bar chart on the same axis. Long idle gaps (a move resumed the next
 * day) are cut out of the axis and marked, so that minutes of work stay visible beside them.
 * Every element a test or a stylesheet needs carries a data attribute (`data-bar`,
 * `data-outage`, `data-marker`, `data-minute`).
 */
import { clock, duration, esc, formatBytes, int } from './format';
import type { MoveReport, ReportStep } from './model';

const WIDTH = 980;
const LABEL_X = 16;
const PLOT_X0 = 268;
const PLOT_X1 = 884;
const DURATION_X = WIDTH - 14;
const TOP = 46;
const ROW = 28;
const BAR = 14;
const BREAK_W = 30;
const CHART_H = 54;

const COLOURS = { done: '#3566a8', failed: '#c92a2a', running: '#e8890c', outage: '#e03131', dns: '#2b8a3e', bridge: '#7048e8', minute: '#1c7ed6', grid: '#e3e7ed', text: '#1f2933', muted: '#6b7785' };

interface Segment {
  from: number;
  to: number;
  x0: number;
  x1: number;
}

/** A time axis of piecewise-linear segments with the idle gaps between them cut out. */
export interface TimeAxis {
  segments: Segment[];
  x(ms: number): number;
}

/** Builds the axis from the moments the picture must show (ms since the epoch, as [from, to]). */
export function timeAxis(spans: [number, number][], x0 = PLOT_X0, x1 = PLOT_X1): TimeAxis {
  const sorted = spans.filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b)).map(([a, b]) => [a, Math.max(a, b)] as [number, number]).sort((p, q) => p[0] - q[0]);
  if (sorted.length === 0) sorted.push([0, 1000]);
  const merged: [number, number][] = [];
  for (const s of sorted) {
    const last = merged[merged.length - 1];
    if (last && s[0] <= last[1]) last[1] = Math.max(last[1], s[1]);
    else merged.push([...s]);
  }
  const active = merged.reduce((n, [a, b]) => n + (b - a), 0);
  // A pause is cut out when it is long beside the work; short waits (a prompt answered after
  // a minute) stay, since they are part of what the operator lived through.
  const cut = Math.max(5 * 60_000, active * 0.25);
  const runs: [number, number][] = [];
  for (const m of merged) {
    const last = runs[runs.length - 1];
    if (last && m[0] - last[1] <= cut) last[1] = m[1];
    else runs.push([...m]);
  }
  const total = runs.reduce((n, [a, b]) => n + (b - a), 0) || 1;
  const usable = x1 - x0 - BREAK_W * (runs.length - 1);
  const segments: Segment[] = [];
  let x = x0;
  for (const [a, b] of runs) {
    const w = runs.length === 1 && b === a ? usable : (usable * (b - a)) / total;
    segments.push({ from: a, to: b, x0: x, x1: x + w });
    x += w + BREAK_W;
  }
  return {
    segments,
    x(ms) {
      for (const s of segments) {
        if (ms <= s.to) {
          if (ms <= s.from) return s.x0;
          return s.x0 + ((ms - s.from) / (s.to - s.from || 1)) * (s.x1 - s.x0);
        }
      }
      return segments[segments.length - 1]!.x1;
    },
  };
}

const TICKS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

function ticks(axis: TimeAxis, y0: number, y1: number): string {
  const out: string[] = [];
  for (const s of axis.segments) {
    const span = (s.to - s.from) / 1000;
    const px = s.x1 - s.x0;
    const step = TICKS_S.find((t) => (t / Math.max(span, 1)) * px >= 74) ?? 86400;
    const first = Math.ceil(s.from / (step * 1000)) * step * 1000;
    for (let t = first; t <= s.to; t += step * 1000) {
      const x = axis.x(t);
      out.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${y0}" y2="${y1}" stroke="${COLOURS.grid}"/>`);
      out.push(`<text x="${x.toFixed(1)}" y="${y1 + 14}" text-anchor="middle" class="tick">${esc(clock(new Date(t).toISOString(), step < 60))}</text>`);
    }
  }
  // A cut-out pause: a zigzag between two segments, labelled with how long it was.
  for (let i = 1; i < axis.segments.length; i++) {
    const a = axis.segments[i - 1]!;
    const b = axis.segments[i]!;
    const mid = (a.x1 + b.x0) / 2;
    const zig = Array.from({ length: Math.ceil((y1 - y0) / 8) + 1 }, (_, k) => `${(mid + (k % 2 ? 4 : -4)).toFixed(1)},${y0 + k * 8}`).join(' ');
    out.push(`<polyline data-gap points="${zig}" fill="none" stroke="${COLOURS.muted}" stroke-width="1"/>`);
    out.push(`<text x="${mid.toFixed(1)}" y="${y1 + 14}" text-anchor="middle" class="tick gap">${esc(`⋯ ${duration((b.from - a.to) / 1000)} ⋯`)}</text>`);
  }
  return out.join('\n');
}

function stepLabel(s: ReportStep): string {
  return s.id === 'preflight' ? s.title : `${s.id}  ${s.title}`;
}

function stepRow(s: ReportStep, i: number, axis: TimeAxis, endOfData: number): string {
  const y = TOP + i * ROW;
  const mid = y + ROW / 2;
  const out: string[] = [];
  out.push(`<text x="${LABEL_X}" y="${mid + 4}" class="label${s.state === 'pending' ? ' pending' : ''}">${esc(stepLabel(s))}</text>`);
  if (s.started_at) {
    const from = Date.parse(s.started_at);
    const to = s.ended_at ? Date.parse(s.ended_at) : endOfData;
    const x0 = axis.x(from);
    const w = Math.max(3, axis.x(to) - x0);
    const colour = s.state === 'failed' ? COLOURS.failed : s.state === 'running' ? COLOURS.running : COLOURS.done;
    const took = s.seconds ?? (to - from) / 1000;
    const tip = [
      `${stepLabel(s)}: ${s.state}`,
      `${clock(s.started_at)}–${s.ended_at ? clock(s.ended_at) : 'not ended'} UTC (${duration(took)})`,
      s.bytes !== null ? `${formatBytes(s.bytes)} in ${int(s.files ?? 0)} files` : '',
      s.error ? `${s.error.code}: ${s.error.message}` : '',
    ].filter(Boolean).join('\n');
    out.push(
      `<rect data-bar="${esc(s.id)}" data-state="${esc(s.state)}" x="${x0.toFixed(1)}" y="${mid - BAR / 2}" width="${w.toFixed(1)}" height="${BAR}" rx="3" fill="${colour}"${s.state === 'running' ? ' fill-opacity="0.6"' : ''}><title>${esc(tip)}</title></rect>`,
    );
    // A failed step's bar and duration are red; the word is in the steps table (no room here).
    const status = s.state === 'running' ? 'running' : duration(took);
    out.push(`<text x="${DURATION_X}" y="${mid + 4}" text-anchor="end" class="dur ${esc(s.state)}">${esc(status)}</text>`);
  } else {
    out.push(`<text x="${DURATION_X}" y="${mid + 4}" text-anchor="end" class="dur pending">not run</text>`);
  }
  return out.join('\n');
}

function marker(kind: 'dns' | 'bridge', at: string, axis: TimeAxis, y0: number, y1: number, anchorEnd: boolean): string {
  const x = axis.x(Date.parse(at));
  const label = kind === 'dns' ? `DNS switched ${clock(at)}` : `Bridge up ${clock(at)}`;
  const colour = COLOURS[kind];
  return [
    `<g data-marker="${kind}">`,
    `<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${y0 - 6}" y2="${y1}" stroke="${colour}" stroke-width="2" stroke-dasharray="5 3"/>`,
    `<circle cx="${x.toFixed(1)}" cy="${y0 - 6}" r="3.5" fill="${colour}"/>`,
    `<text x="${(x + (anchorEnd ? -7 : 7)).toFixed(1)}" y="${y0 - 2}" text-anchor="${anchorEnd ? 'end' : 'start'}" class="marker" fill="${colour}">${esc(label)}</text>`,
    `</g>`,
  ].join('\n');
}

function minuteChart(r: MoveReport, axis: TimeAxis, y0: number): string {
  const out: string[] = [`<text x="${LABEL_X}" y="${y0 + 18}" class="label">Bridged connections</text>`, `<text x="${LABEL_X}" y="${y0 + 34}" class="sub">per minute, through the old host</text>`];
  const minutes = r.bridged_per_minute;
  const base = y0 + CHART_H;
  out.push(`<line x1="${PLOT_X0}" x2="${PLOT_X1}" y1="${base}" y2="${base}" stroke="${COLOURS.muted}" stroke-width="1"/>`);
  if (!minutes || minutes.length === 0) {
    out.push(`<text x="${(PLOT_X0 + PLOT_X1) / 2}" y="${base - 18}" text-anchor="middle" class="sub">${minutes ? 'no bridged connections' : 'not recorded'}</text>`);
    return out.join('\n');
  }
  const max = Math.max(1, ...minutes.map((m) => m.count));
  for (const m of minutes) {
    const from = Date.parse(m.minute);
    const x0 = axis.x(from);
    const w = Math.max(1.5, axis.x(from + 60_000) - x0 - 1);
    const h = (m.count / max) * (CHART_H - 8);
    out.push(
      `<rect data-minute="${esc(m.minute)}" x="${x0.toFixed(1)}" y="${(base - h).toFixed(1)}" width="${w.toFixed(1)}" height="${h.toFixed(1)}" fill="${COLOURS.minute}"><title>${esc(`${clock(m.minute, false)} UTC: ${int(m.count)} connection(s)`)}</title></rect>`,
    );
  }
  out.push(`<text x="${DURATION_X}" y="${y0 + 14}" text-anchor="end" class="dur">max ${esc(int(max))}/min</text>`);
  return out.join('\n');
}

/** A close-up of a time window (the outage), or the whole move when absent. */
export interface TimelineWindow {
  from: number;
  to: number;
}

/**
 * The window worth a close-up: the outage with some time either side, when the outage is
 * too narrow in the whole picture to read its steps (a long initial sync beside minutes
 * of outage). Undefined when there is no finished outage or it is wide enough already.
 */
export function outageCloseUp(r: MoveReport): TimelineWindow | undefined {
  if (!r.outage.started_at || !r.outage.ended_at) return undefined;
  const from = Date.parse(r.outage.started_at);
  const to = Date.parse(r.outage.ended_at);
  const pad = Math.max(20_000, (to - from) * 0.15);
  const whole = timeAxis(spansOf(r));
  if (whole.x(to) - whole.x(from) > (PLOT_X1 - PLOT_X0) * 0.3) return undefined;
  return { from: from - pad, to: to + pad };
}

function spansOf(r: MoveReport): [number, number][] {
  const endOfData = Date.parse(r.generated_at);
  const spans: [number, number][] = [];
  for (const s of r.steps) {
    if (s.started_at) spans.push([Date.parse(s.started_at), s.ended_at ? Date.parse(s.ended_at) : endOfData]);
  }
  for (const at of [r.dns_switched_at, r.bridge_up_at, r.outage.started_at, r.outage.ended_at]) if (at) spans.push([Date.parse(at), Date.parse(at)]);
  for (const m of r.bridged_per_minute ?? []) spans.push([Date.parse(m.minute), Date.parse(m.minute) + 60_000]);
  return spans;
}

/**
 * The timeline of a move as an SVG element, ready to inline in HTML (no scripts, no external
 * references): the whole move, or with `win` a close-up of that window (steps outside it
 * left out). The root carries `data-view="move"` or `data-view="close-up"`.
 */
export function renderTimelineSvg(r: MoveReport, win?: TimelineWindow): string {
  const endOfData = Date.parse(r.generated_at);
  const inWindow = (from: number, to: number): boolean => !win || (to >= win.from && from <= win.to);
  const axis = timeAxis(win ? [[win.from, win.to]] : spansOf(r));

  // Rows in the order they ran (with --bridge, step 6 runs before step 5); steps not yet run last.
  const rows = [...r.steps]
    .filter((s) => !win || (s.started_at !== null && inWindow(Date.parse(s.started_at), s.ended_at ? Date.parse(s.ended_at) : endOfData)))
    .sort((a, b) => (a.started_at ? Date.parse(a.started_at) : Infinity) - (b.started_at ? Date.parse(b.started_at) : Infinity));
  const rowsEnd = TOP + rows.length * ROW;
  const axisY = rowsEnd + 4;
  const chartY = axisY + 30;
  const height = win ? axisY + 34 : chartY + CHART_H + 26;

  const parts: string[] = [];
  parts.push(`<rect x="${PLOT_X0}" y="${TOP}" width="${PLOT_X1 - PLOT_X0}" height="${rowsEnd - TOP}" fill="#f8f9fb"/>`);
  parts.push(ticks(axis, TOP, axisY));
  for (let i = 1; i < rows.length; i++) parts.push(`<line x1="${LABEL_X}" x2="${DURATION_X}" y1="${TOP + i * ROW}" y2="${TOP + i * ROW}" stroke="${COLOURS.grid}" stroke-width="0.6"/>`);

  if (r.outage.started_at) {
    const x0 = axis.x(Date.parse(r.outage.started_at));
    const open = !r.outage.ended_at;
    const x1 = open ? PLOT_X1 : axis.x(Date.parse(r.outage.ended_at!));
    const w = Math.max(3, x1 - x0);
    const label = open ? `Mail off since ${clock(r.outage.started_at)}, not back on` : `Mail off ${duration(r.outage.seconds ?? 0)}`;
    const cx = Math.min(Math.max(x0 + w / 2, PLOT_X0 + 70), PLOT_X1 - 70);
    parts.push(
      `<g data-outage="${open ? 'open' : 'closed'}">`,
      `<rect x="${x0.toFixed(1)}" y="${TOP - 22}" width="${w.toFixed(1)}" height="${axisY - TOP + 22}" fill="${COLOURS.outage}" fill-opacity="0.11"/>`,
      `<line x1="${x0.toFixed(1)}" x2="${x0.toFixed(1)}" y1="${TOP - 22}" y2="${axisY}" stroke="${COLOURS.outage}" stroke-width="1.2"/>`,
      open ? '' : `<line x1="${(x0 + w).toFixed(1)}" x2="${(x0 + w).toFixed(1)}" y1="${TOP - 22}" y2="${axisY}" stroke="${COLOURS.outage}" stroke-width="1.2"/>`,
      `<text x="${cx.toFixed(1)}" y="${TOP - 28}" text-anchor="middle" class="outage">${esc(label)}</text>`,
      `<title>${esc(`${label} (${clock(r.outage.started_at)}–${r.outage.ended_at ? clock(r.outage.ended_at) : '…'} UTC${r.outage.ended_by ? `, ended by ${r.outage.ended_by}` : ''})`)}</title>`,
      `</g>`,
    );
  }
  rows.forEach((s, i) => parts.push(stepRow(s, i, axis, endOfData)));
  if (r.dns_switched_at && inWindow(Date.parse(r.dns_switched_at), Date.parse(r.dns_switched_at))) {
    const dnsAfterBridge = r.bridge_up_at !== null && Date.parse(r.dns_switched_at) >= Date.parse(r.bridge_up_at);
    parts.push(marker('dns', r.dns_switched_at, axis, TOP, axisY, !dnsAfterBridge && axis.x(Date.parse(r.dns_switched_at)) > PLOT_X1 - 150));
  }
  if (r.bridge_up_at && inWindow(Date.parse(r.bridge_up_at), Date.parse(r.bridge_up_at))) {
    const endAnchor = r.dns_switched_at === null || Date.parse(r.bridge_up_at) <= Date.parse(r.dns_switched_at);
    parts.push(marker('bridge', r.bridge_up_at, axis, TOP, axisY, endAnchor && axis.x(Date.parse(r.bridge_up_at)) > PLOT_X0 + 150));
  }
  parts.push(`<text x="${PLOT_X1}" y="${axisY + 28}" text-anchor="end" class="sub">times in UTC</text>`);
  if (!win) parts.push(minuteChart(r, axis, chartY));

  return [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${WIDTH} ${height}" width="${WIDTH}" height="${height}" role="img" aria-labelledby="${win ? 'close-up-title' : 'timeline-title'}" class="timeline" data-view="${win ? 'close-up' : 'move'}" font-family="system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif">`,
    `<title id="${win ? 'close-up-title' : 'timeline-title'}">${esc(win ? `The outage of the move of ${r.mail_domain}, close up` : `Timeline of the move of ${r.mail_domain}`)}</title>`,
    `<style>.label{font-size:13px;fill:${COLOURS.text}}.label.pending{fill:${COLOURS.muted}}.sub{font-size:11px;fill:${COLOURS.muted}}.tick{font-size:11px;fill:${COLOURS.muted}}.dur{font-size:12.5px;fill:${COLOURS.text};font-variant-numeric:tabular-nums}.dur.pending{fill:${COLOURS.muted}}.dur.failed{fill:${COLOURS.failed};font-weight:600}.outage{font-size:13px;font-weight:600;fill:${COLOURS.outage}}.marker{font-size:12px;font-weight:600}</style>`,
    ...parts,
    `</svg>`,
  ].join('\n');
}
