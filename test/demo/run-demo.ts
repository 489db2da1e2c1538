/**
 * `npm run demo`: the whole migration rehearsed on one machine. setupRehearsal builds an old
 * relay (a generated tree of DEMO_ADDRESSES addresses, default 100, with its certificate,
 * DKIM key and Postfix spool) served by a real agent on 127.0.0.2, an empty new host with
 * its agent on 127.0.0.3, a real NSD for example.org, and a chatmail/relay checkout whose
 * cmdeploy is the behaving stand-in. Then it runs what an operator runs:
 *
 *     cmmigrate run --plan plan.toml --yes
 *     cmmigrate status --plan plan.toml
 *     cmmigrate verify --plan plan.toml
 *
 * and plays the operator's part at step 5: two seconds after the journal shows step 5
 * running, it changes the A record at the DNS server and removes the AAAA. It ends with a
 * summary read from the journal, the hosts' states and the stand-in's log. `--keep` keeps
 * the directory (plan, journal, roots, checkout) for a look afterwards.
 *
 * `--bridge` runs `cmmigrate run --bridge` instead (issue 14): step 6 before step 5, and the
 * old host bridging the relay's ports to the new one in between. A client that only ever
 * connects to the old address (it never sees the DNS change) opens an SMTP session every
 * 200 ms; the summary prints the outage as that client saw it. DNS then switches 10 s after
 * step 5 starts, which that client does not notice.
 */
import { spawn } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { formatBytes } from '../../controller/report';
import { CONTROLLER_CLI } from '../support/harness';
import { DEMO_TREE, MAIL_DOMAIN, OLD_HOST, setupRehearsal, type Rehearsal } from '../support/rehearsal';
import { RELAY_UNITS, unitState } from '../support/standin-relay';

/** How long the "operator" takes to change the DNS records once step 5 shows them. */
const DNS_DELAY_MS = 2000;

function run(cwd: string, args: string[]): Promise<number | null> {
  process.stdout.write(`\n[$ cmmigrate ${args.join(' ')}]\n`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CONTROLLER_CLI, ...args], { cwd, stdio: 'inherit' });
    child.on('error', reject);
    child.on('close', resolve);
  });
}

/** A time in the journal (ISO text), if it is there. */
function time(v: unknown): Date | undefined {
  if (typeof v !== 'string') return undefined;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

const seconds = (a: Date, b: Date): string => `${((b.getTime() - a.getTime()) / 1000).toFixed(1)} s`;

/** Whether the endpoint presents a certificate that the relay's own (the CA file) validates for the mail domain. */
function presentsRelayCertificate(endpoint: string, ca: string): Promise<boolean> {
  const i = endpoint.lastIndexOf(':');
  return new Promise((resolve) => {
    const s = tls.connect({ host: endpoint.slice(0, i), port: Number(endpoint.slice(i + 1)), servername: MAIL_DOMAIN, ca, rejectUnauthorized: false }, () => {
      resolve(s.authorized);
      s.end();
    });
    s.on('error', () => resolve(false));
  });
}

const portOf = (endpoint: string): number => Number(endpoint.slice(endpoint.lastIndexOf(':') + 1));

/** One SMTP greeting from host:port within 2 s: true when a 220 came. */
function smtpGreets(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean): void => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), 2000);
    s.once('data', (d) => done(d.toString('latin1').startsWith('220 ')));
    s.once('error', () => done(false));
    s.once('close', () => done(false));
  });
}

/**
 * A client that never sees the DNS change: it only ever connects to the old host's
 * address. The rehearsal's stand-ins serve on random ports, so "port 25" of the old address
 * is the old stand-in's port while the old relay runs and, once bridged, the port the bridge
 * passes to the new stand-in; on a real host both are 25.
 */
function oldAddressClient(r: Rehearsal): { stop(): void; seen: { at: number; ok: boolean }[] } {
  const seen: { at: number; ok: boolean }[] = [];
  let on = true;
  void (async () => {
    while (on) {
      const before = await smtpGreets(OLD_HOST, portOf(r.ports.old[25]));
      const bridged = before || (await smtpGreets(OLD_HOST, portOf(r.ports.new[25])));
      seen.push({ at: Date.now(), ok: bridged });
      await new Promise((res) => setTimeout(res, 200));
    }
  })();
  return { stop: () => (on = false), seen };
}

/** The longest run of failures between two successes, as the client saw it. */
function clientOutage(seen: { at: number; ok: boolean }[]): { from: number; to: number } | undefined {
  let lastOk: number | undefined;
  let best: { from: number; to: number } | undefined;
  for (const s of seen) {
    if (!s.ok) continue;
    if (lastOk !== undefined && (!best || s.at - lastOk > best.to - best.from)) best = { from: lastOk, to: s.at };
    lastOk = s.at;
  }
  return best;
}

async function summary(r: Rehearsal): Promise<void> {
  console.log('\n=== rehearsal summary ===');
  const journal = r.journal();
  const steps: Record<string, Record<string, unknown>> = journal?.steps ?? {};
  const ids = ['preflight', '1', '2', '3', '4', '5', '6'];
  console.log(`journal: ${ids.map((id) => `${id} ${String(steps[id]?.state ?? 'missing')}`).join(', ')}`);

  // The run records the window itself; the steps' own times are the fallback.
  const outage: Record<string, unknown> = journal?.outage ?? {};
  const outageStart = time(outage.started_at) ?? time(steps['3']?.started_at);
  const outageEnd = time(outage.ended_at) ?? time(steps['6']?.ended_at);
  if (outageStart && outageEnd) {
    const dnsStart = time(steps['5']?.started_at);
    const dnsEnd = time(steps['5']?.ended_at);
    const dnsSeconds = typeof outage.dns_seconds === 'number' ? `${outage.dns_seconds.toFixed(1)} s` : dnsStart && dnsEnd ? seconds(dnsStart, dnsEnd) : undefined;
    const dns = journal?.bridge_up_at ? `; the DNS wait (${dnsSeconds ?? '?'}) came after it` : dnsSeconds ? `, of which waiting for DNS ${dnsSeconds}` : '';
    console.log(`outage window (start of step 3 to ${journal?.bridge_up_at ? 'the bridge up' : 'end of step 6'}): ${seconds(outageStart, outageEnd)}${dns}`);
  } else {
    console.log('outage window: the journal has no start time for step 3 or no end time for step 6');
  }
  if (r.dnsSwitchedAt) console.log(`DNS switched at the server after step 5 started: ${r.dnsSwitchedAt.toISOString()}`);
  if (typeof journal?.bridge_up_at === 'string') console.log(`bridge up on the old host at ${journal.bridge_up_at} (outage ended there; steps ran in the order ${(journal.order ?? []).join(', ')})`);

  const calls = r.calls();
  const wrong = calls.filter((c) => c.verdict !== 'ok');
  console.log(`cmdeploy (stand-in): ${calls.length} calls: ${calls.map((c) => `${c.action ?? '?'} on ${c.host ?? '?'} (exit ${c.exit})`).join(', ')}`);
  for (const c of wrong) console.log(`  ! ${c.verdict}: argv ${JSON.stringify(c.argv)}, CMDEPLOY_STAGES ${JSON.stringify(c.stages)}`);

  const active = (state: string): string => RELAY_UNITS.filter((u) => unitState(state, u) === 'active').join(' ') || 'none';
  console.log(`old host, running: ${active(r.oldHostState)}`);
  console.log(`new host, running: ${active(r.newHostState)}`);
  console.log(`new host, listening: ${r.services.new.listening().join(' ') || 'nothing'}`);

  const ca = await fsp.readFile(path.join(r.dir, 'relay-cert.pem'), 'utf8');
  for (const port of [993, 465] as const) {
    console.log(`new host ${port}: ${(await presentsRelayCertificate(r.ports.new[port], ca)) ? "presents the relay's certificate" : "does NOT present the relay's certificate"}`);
  }
  const dkim = 'etc/dkimkeys/opendkim.private';
  const [a, b] = await Promise.all([fsp.readFile(path.join(r.oldRoot, dkim)), fsp.readFile(path.join(r.newRoot, dkim)).catch(() => Buffer.alloc(0))]);
  console.log(`DKIM key: ${a.equals(b) ? 'the old relay\'s, carried over' : 'DIFFERENT from the old relay\'s: other relays would reject its mail'}`);
}

async function main(): Promise<void> {
  const keep = process.argv.includes('--keep');
  const bridge = process.argv.includes('--bridge');
  const addresses = Number(process.env.DEMO_ADDRESSES ?? DEMO_TREE.addresses);
  console.log(`cmmigrate demo: a rehearsal of the whole move, with a relay of ${addresses} addresses ...`);
  const r = await setupRehearsal({ tree: { ...DEMO_TREE, addresses } });
  // Ctrl-C reaches cmmigrate too (same process group): let it stop, then clean up below.
  let interrupted = false;
  process.on('SIGINT', () => (interrupted = true));
  let code: number | null = 1;
  try {
    const s = r.stats;
    console.log(`old host 127.0.0.2: root ${r.oldRoot}, agent ${r.old.address}: ${s.files} files, ${formatBytes(s.bytes)}, ${s.hardlinks} hard links`);
    console.log(`new host 127.0.0.3: root ${r.newRoot}, agent ${r.new.address}: nothing installed yet`);
    console.log(`relay checkout: ${r.relayDir} (cmdeploy stand-in, HEAD ${r.relayHead.slice(0, 12)})`);
    console.log(`DNS: NSD on ${r.nsd.endpoint} serves ${MAIL_DOMAIN} A 127.0.0.2 and an AAAA; it is switched ${DNS_DELAY_MS / 1000} s after step 5 starts`);
    console.log(`plan: ${r.plan}`);

    let client: ReturnType<typeof oldAddressClient> | undefined;
    if (bridge) {
      const text = await fsp.readFile(r.plan, 'utf8');
      const ports = [25, 465, 587, 993, 443].map((p) => portOf(r.ports.new[p as 25]));
      await fsp.writeFile(r.plan, text.replace(/^(mail_domain = .*)$/m, `$1\nbridge_listen = ["${OLD_HOST}"]\nbridge_ports = [${ports.join(', ')}]`));
      console.log(`bridge: the old host bridges ${OLD_HOST} ports ${ports.join(' ')} (the new stand-in's ports) to the new host; a client connects only to ${OLD_HOST}`);
      client = oldAddressClient(r);
    }
    const stopDns = r.autoSwitchDns(bridge ? 10_000 : DNS_DELAY_MS);
    try {
      code = await run(r.dir, ['run', '--plan', 'plan.toml', '--yes', ...(bridge ? ['--bridge'] : [])]);
    } finally {
      stopDns();
      client?.stop();
    }
    if (bridge && !interrupted) await run(r.dir, ['bridge', 'status', '--plan', 'plan.toml']);
    if (!interrupted) await run(r.dir, ['status', '--plan', 'plan.toml']);
    if (code === 0 && !interrupted) code = await run(r.dir, ['verify', '--plan', 'plan.toml']);
    if (!interrupted) await summary(r);
    if (client) {
      const o = clientOutage(client.seen);
      const ok = client.seen.filter((s) => s.ok).length;
      console.log(
        o
          ? `the old-address client: ${ok}/${client.seen.length} sessions answered; mail unreachable for it from ${new Date(o.from).toISOString()} to ${new Date(o.to).toISOString()} (${seconds(new Date(o.from), new Date(o.to))}), whatever the DNS wait`
          : `the old-address client: ${ok}/${client.seen.length} sessions answered, no gap seen`,
      );
    }
  } finally {
    await r.close({ keep });
    if (keep) console.log(`\nkept ${r.dir} (plan, journal, both roots, host states, the checkout and its calls.jsonl)`);
  }
  if (interrupted) process.exit(130);
  if (code !== 0) {
    console.error(`\ndemo: failed (exit ${code})`);
    process.exit(1);
  }
  console.log("\ndemo: done — the new host holds the old relay's state, verified, and serves mail; the old host's mail is off.");
}

main().catch((err) => {
  console.error('demo failed:', err);
  process.exit(1);
});
