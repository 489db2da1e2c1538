/**
 * Product code that only tests used (issue 15, point 9): the scripts install-agent and
 * uninstall-agent run on a relay host export CMMIGRATE_PREFIX (read only by the tests'
 * stand-in systemctl) only when the layout has a test prefix; `run --dns-interval`, which
 * the tests set, is a documented option.
 */
import { describe, expect, it } from 'vitest';
import { cmmigrate } from './support/harness';
import { remoteLayout } from '../controller/remote-layout';
import { probeScript } from '../controller/remote-scripts';

describe('remote scripts', () => {
  it('carry no CMMIGRATE_PREFIX for a real host (no prefix)', () => {
    const s = probeScript(remoteLayout(''), 8443);
    expect(s).not.toContain('CMMIGRATE_PREFIX');
    expect(s).toMatch(/^PREFIX=/m);
  });

  it('export CMMIGRATE_PREFIX when a test prefix is set', () => {
    expect(probeScript(remoteLayout('/tmp/cmm-host'), 8443)).toContain('export CMMIGRATE_PREFIX="$PREFIX"');
  });
});

describe('run --dns-interval', () => {
  it('is listed in run --help', async () => {
    const r = await cmmigrate(['run', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--dns-interval <seconds>\s+time between two DNS polls in step 5 \(default 5\)/);
  });
});
