/**
 * Text helpers shared by the report's HTML and SVG: escaping of every string taken from
 * data, and times and durations as an operator reads them.
 */
import { formatBytes, formatDuration } from '../report';

export { formatBytes, formatDuration };

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text made safe for HTML and SVG content and for quoted attribute values. */
export function esc(value: unknown): string {
  // Control characters other than tab and newline are not allowed in XML (the SVG) and
  // only confuse a reader: shown as U+FFFD.
  return String(value).replace(/[&<>"']/g, (c) => ENTITIES[c]!).replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, '\ufffd');
}

/** `10:42:07` in UTC (the report states UTC once, beside the times). */
export function clock(iso: string, withSeconds = true): string {
  const t = new Date(iso).toISOString();
  return withSeconds ? t.slice(11, 19) : t.slice(11, 16);
}

/** `2026-11-30 10:42:07 UTC`. */
export function dateTime(iso: string): string {
  return `${new Date(iso).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** A duration to one decimal under a minute (a step of 0.4 s is not "0s"). */
export function duration(seconds: number): string {
  if (seconds < 10) return `${(Math.round(seconds * 10) / 10).toFixed(1)}s`;
  return formatDuration(seconds);
}

/** 12,345 */
export function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
