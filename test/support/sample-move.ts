/**
 * A realistic finished move as data: the run journal as controller/run/journal.ts writes it
 * (with --bridge, so step 6 ran before step 5), and the extras the report can show beside it.
 * Used by the report's tests and by test/demo/make-report.ts.
 */
import type { JournalData } from '../../controller/run/journal';
import type { ReportExtras } from '../../controller/move-report';

const T = (hms: string): string => `2026-11-30T${hms}.000Z`;
const secs = (a: string, b: string): number => (Date.parse(T(b)) - Date.parse(T(a))) / 1000;

function step(from: string, to: string, more: Partial<JournalData['steps'][string]> = {}): JournalData['steps'][string] {
  return { state: 'done', started_at: T(from), ended_at: T(to), seconds: secs(from, to), marks: {}, attempts: 1, ...more };
}

/** The journal of a move of chat.example.org that finished, bridge on. */
export function sampleJournal(): JournalData {
  return {
    version: 1,
    mail_domain: 'chat.example.org',
    old_host: 'old.example.org',
    new_host: 'new.example.net',
    created_at: T('08:02:11'),
    updated_at: T('09:04:10'),
    steps: {
      preflight: step('08:02:12', '08:02:19'),
      '1': step('08:02:19', '08:41:50', { bytes: 2_591_834_112, files: 138_412 }),
      '2': step('08:41:53', '08:46:20', { marks: { cmdeploy: T('08:46:20') } }),
      '3': step('08:48:05', '08:49:31', { marks: { cmdeploy: T('08:49:29') } }),
      '4': step('08:49:31', '08:50:14', { bytes: 18_874_368, files: 1_204 }),
      '6': step('08:50:15', '08:51:48', { marks: { cmdeploy: T('08:51:20'), restarted: T('08:51:31') } }),
      '5': step('08:51:53', '09:04:10'),
    },
    outage: { started_at: T('08:48:05'), ended_at: T('08:51:48'), dns_seconds: secs('08:51:53', '09:04:10') },
    passes: [],
    verify: {},
  };
}

/** Bridged connections per minute: many at first, fewer as resolvers forget the old address. */
function perMinute(): { minute: string; count: number }[] {
  const out: { minute: string; count: number }[] = [];
  const start = Date.parse(T('08:52:00'));
  for (let i = 0; i < 53; i++) {
    const wave = Math.round(46 * Math.exp(-i / 14) + 3 * Math.sin(i * 1.7) + (i < 20 ? 4 : 0));
    out.push({ minute: new Date(start + i * 60_000).toISOString(), count: Math.max(0, wave) });
  }
  return out;
}

/** What the later parts of the controller record beside the journal. */
export function sampleExtras(): ReportExtras {
  return {
    dns_switched_at: T('09:04:08'),
    bridge_up_at: T('08:51:52'),
    bridged_per_minute: perMinute(),
    passes: [
      { phase: 'initial', bytes: 2_591_834_112, files: 138_412, seconds: 2369, started_at: T('08:02:19') },
      { phase: 'catch-up', bytes: 61_234_000, files: 2_950, seconds: 79, started_at: T('08:46:21') },
      { phase: 'catch-up', bytes: 2_310_000, files: 311, seconds: 17, started_at: T('08:47:41') },
      { phase: 'final', bytes: 18_874_368, files: 1_204, seconds: 31, started_at: T('08:49:32') },
    ],
    verify: {
      quick: { entries: 140_233, from_records: 139_018, read: 1_215, differences: 0, seconds: 6.4, at: T('08:50:09') },
      full: { entries: 140_233, from_records: 0, read: 140_233, differences: 0, seconds: 51, at: T('09:05:02') },
    },
    warnings: [
      { message: 'A of chat.example.org has a TTL of 3600 s at ns1.example-dns.net; clients may keep the old address for up to an hour (the bridge carries them)', at: T('08:02:18'), step: 'preflight' },
      { message: 'postfix ran on the new host before step 6; stopping it again', at: T('08:49:33'), step: '4' },
      { message: 'raise the TTL of A and AAAA of chat.example.org again (14400–86400 s) now that the move is done', at: T('09:04:10'), step: '5' },
    ],
    cmdeploy_calls: [
      { command: 'CMDEPLOY_STAGES=install,configure scripts/cmdeploy run --ssh-host new.example.net', exit_status: 0, seconds: 267, side: 'new', step: '2', started_at: T('08:41:53') },
      { command: 'scripts/cmdeploy run --disable-mail --ssh-host old.example.org', exit_status: 0, seconds: 84, side: 'old', step: '3', started_at: T('08:48:05') },
      { command: 'CMDEPLOY_STAGES=activate scripts/cmdeploy run --ssh-host new.example.net', exit_status: 0, seconds: 65, side: 'new', step: '6', started_at: T('08:50:15') },
    ],
  };
}

/** The moment the sample report is made (after the bridge's last counted minute). */
export const SAMPLE_NOW = new Date(T('09:45:00'));
