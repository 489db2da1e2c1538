/**
 * `cmmigrate run --bridge` end to end (issue 14): real agents on loopback, a real NSD, the
 * cmdeploy stand-in and the relay's stand-in services. A client that only ever connects to
 * the OLD host's address reaches the new host's stand-in once the bridge is up, while the
 * authoritative servers still show the old address; `bridge status` shows it, an agent
 * restart resumes the bridge, a port whose new host is down is refused cleanly, and
 * `bridge stop` ends everything.
 */
import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from './support/harness';
import { NEW_HOST, OLD_HOST, setupRehearsal, type Rehearsal } from './support/rehearsal';

const TIMEOUT = 240_000;
let r: Rehearsal | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

const portOf = (endpoint: string): number => Number(endpoint.slice(endpoint.lastIndexOf(':') + 1));

/** Connects to host:port and resolves with the first line the server sends (or rejects). */
function greeting(host: string, port: number, keepOpen = false): Promise<{ line: string; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let buf = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no greeting from ${host}:${port}`));
    }, 10_000);
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        if (!keepOpen) socket.end();
        resolve({ line: buf.slice(0, nl).trim(), socket });
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      reject(new Error(`${host}:${port} closed without a greeting`));
    });
  });
}

/** How a connection ends: 'closed' (FIN or RST after accept) or 'refused' (no listener), and how long it took. */
function outcome(host: string, port: number): Promise<{ how: 'closed' | 'refused' | 'data'; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.on('data', () => {
      s.destroy();
      resolve({ how: 'data', ms: Date.now() - t0 });
    });
    s.on('error', (err: NodeJS.ErrnoException) => resolve({ how: err.code === 'ECONNREFUSED' ? 'refused' : 'closed', ms: Date.now() - t0 }));
    s.on('close', () => resolve({ how: 'closed', ms: Date.now() - t0 }));
  });
}

async function until<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, ms = 120_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

function lastJson(stdout: string): Record<string, any> {
  const lines = stdout.split('\n').filter((l) => l.trim().startsWith('{'));
  return JSON.parse(lines.at(-1)!);
}

describe('cmmigrate run --bridge', () => {
  it(
    'brings mail back through the old address before DNS moves; status, agent restart, new host down and stop',
    async () => {
      r = await setupRehearsal();
      const plan = path.relative(r.dir, r.plan);
      // The stand-ins serve the relay's ports on random ports: the bridge takes the new
      // host's SMTP ports (25 and 587 stand-ins) and one where the new host serves nothing.
      const smtp = portOf(r.ports.new[25]);
      const submission = portOf(r.ports.new[587]);
      const down = await freePort(NEW_HOST);
      const text = await fsp.readFile(r.plan, 'utf8');
      await fsp.writeFile(r.plan, text.replace(/^(mail_domain = .*)$/m, `$1\nbridge_listen = ["${OLD_HOST}", "::1"]\nbridge_ports = [${smtp}, ${submission}, ${down}]`));

      // Nothing answers on the old address at those ports before the bridge.
      expect((await outcome(OLD_HOST, smtp)).how).toBe('refused');

      const dry = await r.run(['run', '--plan', plan, '--dry-run', '--bridge']);
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.stdout).toMatch(/order \(with the bridge\): preflight, 1, 2, 3, 4, 6, 5/);
      expect(dry.stdout).toContain('Bridge (between step 6 and step 5)');
      expect(dry.stdout.indexOf('Step 6/6')).toBeLessThan(dry.stdout.indexOf('Step 5/6'));
      expect(r.journal()).toBeUndefined();

      const running = r.run(['run', '--plan', plan, '--yes', '--bridge', '--dns-interval', '0.2'], TIMEOUT);
      // The bridge comes up after step 6 and before the DNS switch.
      let ended: { code: number | null; stderr: string } | undefined;
      void running.then((x) => (ended = x));
      await until('the bridge', () => {
        if (ended) throw new Error(`run ended before the bridge was up (${ended.code}):\n${ended.stderr}`);
        return r!.journal()?.bridge_up_at;
      });
      const j = r.journal();
      expect(j.steps['6'].state).toBe('done');
      expect(j.steps['5'].state).not.toBe('done');
      expect(j.order).toEqual(['preflight', '1', '2', '3', '4', '6', '5']);
      expect(j.outage.ended_at).toBe(j.bridge_up_at);
      // Issue 14's target: the outage (from step 3's start) ends at most 5 s after step 6's
      // activation is done, whatever the DNS wait, and it began no earlier than step 3.
      const outageFrom = Date.parse(j.outage.started_at) - Date.parse(j.steps['3'].started_at);
      expect(outageFrom).toBeGreaterThanOrEqual(0);
      expect(outageFrom).toBeLessThan(1000);
      expect(Date.parse(j.bridge_up_at) - Date.parse(j.steps['6'].ended_at)).toBeLessThan(5000);
      expect(j.bridge.stopped_units).toContain('nginx');
      expect(r.dnsSwitchedAt).toBeUndefined();

      // A client of the old address reaches the new host's stand-in SMTP service, DNS unchanged.
      const held = await greeting(OLD_HOST, smtp, true);
      expect(held.line).toMatch(/^220 mail\.example\.org ESMTP/);
      const sub = await greeting(OLD_HOST, submission);
      expect(sub.line).toMatch(/^220 /);
      // The old host's IPv6 address (::1 here) is bridged too, to the same IPv4 target.
      expect((await greeting('::1', submission)).line).toMatch(/^220 /);
      // The new host down on a port: accepted, then closed at once; nothing hangs.
      const refused = await outcome(OLD_HOST, down);
      expect(refused.how).toBe('closed');
      expect(refused.ms).toBeLessThan(5000);

      const st = await r.run(['bridge', 'status', '--plan', plan, '--json']);
      expect(st.code, st.stderr).toBe(0);
      const status = lastJson(st.stdout);
      expect(status.running).toBe(true);
      expect(status.target).toBe(NEW_HOST);
      const p25 = status.ports.find((p: { port: number }) => p.port === smtp);
      expect(p25.open).toBe(1);
      expect(p25.total).toBeGreaterThanOrEqual(1);
      expect(p25.bytes_from_new).toBeGreaterThan(0);
      expect(p25.per_minute.counts.reduce((a: number, b: number) => a + b, 0)).toBeGreaterThanOrEqual(1);
      expect(status.ports.find((p: { port: number }) => p.port === down).target_failed).toBe(1);
      expect(status.stop_safe).toBe(false);
      const people = await r.run(['bridge', 'status', '--plan', plan]);
      expect(people.stdout).toContain(`-> ${NEW_HOST}`);
      expect(people.stdout).toContain('not yet safe to stop');

      // DNS moves; the run ends with the bridge still up and the report written.
      await r.switchDns();
      const run = await running;
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain('The bridge on the old host stays up');
      expect(run.stderr).toMatch(/report: .*report\.html/);
      const end = r.journal();
      expect(end.dns_switched_at).toBeDefined();
      expect(Date.parse(end.dns_switched_at)).toBeGreaterThan(Date.parse(end.bridge_up_at));
      expect(end.cmdeploy_calls.map((c: { step: string; exit_status: number }) => `${c.step}:${c.exit_status}`)).toEqual(['2:0', '3:0', '6:0']);
      await fsp.access(path.join(r.dir, '.cmmigrate', 'report.html'));
      const rep = await r.run(['report', '--plan', plan, '--json']);
      expect(rep.code, rep.stderr).toBe(0);
      const model = lastJson(rep.stdout);
      expect(model.bridge_up_at).toBe(end.bridge_up_at);
      expect(model.outage.ended_by).toBe('bridge');

      // The old agent restarts (systemd would): the bridge resumes from its state on disk.
      const closed = new Promise<void>((res) => held.socket.on('close', () => res()));
      await r.restartAgent('old');
      await closed;
      expect((await greeting(OLD_HOST, smtp)).line).toMatch(/^220 /);
      const after = lastJson((await r.run(['bridge', 'status', '--plan', plan, '--json'])).stdout);
      expect(after.running).toBe(true);
      expect(after.ports.find((p: { port: number }) => p.port === smtp).total).toBeGreaterThanOrEqual(2);

      // bridge stop ends the open connection and the listeners.
      const open = await greeting(OLD_HOST, submission, true);
      const gone = new Promise<void>((res) => open.socket.on('close', () => res()));
      const stop = await r.run(['bridge', 'stop', '--plan', plan]);
      expect(stop.code, stop.stderr).toBe(0);
      await gone;
      expect((await outcome(OLD_HOST, smtp)).how).toBe('refused');
      const none = lastJson((await r.run(['bridge', 'status', '--plan', plan, '--json'])).stdout);
      expect(none.running).toBe(false);
      // Stopping again is not an error.
      expect((await r.run(['bridge', 'stop', '--plan', plan])).code).toBe(0);
    },
    TIMEOUT + 60_000,
  );
});
