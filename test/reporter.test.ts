/**
 * controller/report/: the same events through the text reporter and the JSON-lines
 * reporter (issue 11). Text goes to stderr for people (listings to stdout), JSON only to
 * stdout; warnings and errors reach stderr in both; listeners see every event.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { CmError } from '../proto';
import { createReporter, type Reporter, type ReportEvent } from '../controller/report';

function capture(json: boolean): { r: Reporter; out: () => string; err: () => string; seen: ReportEvent[] } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let o = '';
  let e = '';
  stdout.on('data', (d) => (o += d));
  stderr.on('data', (d) => (e += d));
  const r = createReporter(json, { stdout, stderr });
  const seen: ReportEvent[] = [];
  r.listen((ev) => seen.push(ev));
  return { r, out: () => o, err: () => e, seen };
}

/** One short run's worth of events. */
function play(r: Reporter): number {
  r.step({ step: '2', label: 'Step 2/6', title: 'Pre-configure', state: 'started' });
  r.command({ side: 'new', host: '127.0.0.3', command: 'scripts/cmdeploy run --ssh-host 127.0.0.3' });
  r.output({ side: 'new', host: '127.0.0.3', stream: 'stdout', line: 'deploying' });
  r.command({ side: 'new', host: '127.0.0.3', command: 'postsuper -s', op: 'postsuper.requeue', where: 'on the new host 127.0.0.3, through its agent' });
  r.info('  plain line');
  r.item('listing line');
  r.progress('halfway');
  r.warn('careful');
  r.step({ step: '2', label: 'Step 2/6', title: 'Pre-configure', state: 'done', seconds: 1.5, bytes: 2048, moved: { bytes: 2048, files: 3 } });
  r.event({ event: 'done', complete: false });
  return r.error(new CmError('step.cmdeploy_failed', 'cmdeploy failed', { hint: 'run it again' }), 'run');
}

describe('reporters', () => {
  it('text: lines for people on stderr, the listing on stdout, no JSON', async () => {
    const c = capture(false);
    expect(play(c.r)).toBe(1);
    expect(c.out()).toBe('listing line\n');
    expect(c.err()).toBe(
      [
        '',
        '==> Step 2/6: Pre-configure',
        '[$ scripts/cmdeploy run --ssh-host 127.0.0.3]',
        '  new| deploying',
        '[$ postsuper -s]   (on the new host 127.0.0.3, through its agent)',
        '  plain line',
        'warning: careful',
        '    done in 2s, 2.0 KiB in 3 files moved',
        'error: cmmigrate run: cmdeploy failed [step.cmdeploy_failed]',
        '  next: run it again',
        '',
      ].join('\n'),
    );
  });

  it('JSON: one object per line on stdout; only the warning and the error on stderr', async () => {
    const c = capture(true);
    expect(play(c.r)).toBe(1);
    const events = c.out().trim().split('\n').map((l) => JSON.parse(l));
    expect(events).toEqual([
      { event: 'step', step: '2', title: 'Pre-configure', state: 'started' },
      { event: 'command', host: '127.0.0.3', side: 'new', command: 'scripts/cmdeploy run --ssh-host 127.0.0.3' },
      { event: 'output', host: '127.0.0.3', side: 'new', stream: 'stdout', line: 'deploying' },
      { event: 'command', host: '127.0.0.3', side: 'new', command: 'postsuper -s', op: 'postsuper.requeue' },
      { event: 'step', step: '2', title: 'Pre-configure', state: 'done', seconds: 1.5, bytes: 2048 },
      { event: 'done', complete: false },
      { event: 'error', command: 'run', code: 'step.cmdeploy_failed', message: 'cmdeploy failed', hint: 'run it again' },
    ]);
    expect(c.err()).toBe('warning: careful\nerror: cmmigrate run: cmdeploy failed [step.cmdeploy_failed]\n  next: run it again\n');
  });

  it('listeners see the same events from both', async () => {
    const text = capture(false);
    const json = capture(true);
    play(text.r);
    play(json.r);
    expect(text.seen).toEqual(json.seen);
    expect(text.seen.map((e) => e.event)).toEqual(['step', 'command', 'output', 'command', 'step', 'done', 'error']);
  });
});
