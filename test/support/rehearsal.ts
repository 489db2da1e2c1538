/**
 * A whole migration on one machine, with real processes wherever they can run here: two
 * agents of the built CLI on 127.0.0.2 (old) and 127.0.0.3 (new) serving separate roots,
 * a real NSD serving the zone of `mail.example.org`, a chatmail/relay checkout whose
 * cmdeploy is the behaving stand-in of standin-relay.ts, host states that the stand-in
 * host tools on the agents' PATH read and write, and each host's mail ports (relay-
 * services.ts) open while the units behind them run. The plan is the full one that
 * `cmmigrate run` reads.
 *
 * Starting state: the old root is a generated relay with a real self-signed certificate for
 * the mail domain in its acmetool tree and `/etc/chatmail-version` = the checkout's HEAD;
 * every relay unit of the old host runs. The new root knows only root (step 2 adds the
 * relay's users, at other ids); no unit of the new host runs. DNS: `mail A 127.0.0.2` and an
 * AAAA that the switch removes, the new host having no IPv6.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { dkimRecordValue, dkimZoneValue } from '../../controller/relay/dkim';
import { cmmigrate, freePort, startAgentProcess, type AgentProcess, type CliResult } from './harness';
import { hostToolsEnv } from './host-tools';
import { startNsd, type TestNsd, type ZoneRecord } from './nsd';
import { generateRelayTree, type RelayTreeOptions, type RelayTreeStats } from './relay-tree';
import { startRelayServices, SERVICE_PORTS, type RelayServices, type ServicePort } from './relay-services';
import { makeStandinRelay, setUnitState, upstreamRunningUnits, type LoggedCall, type StandinRelay, type StandinRelayOptions } from './standin-relay';
import { selfSignedCertificate } from './test-certs';


/** The demo's relay (`DEMO_ADDRESSES` overrides the addresses): the README states its size. */
export const DEMO_TREE = { addresses: 100, messagesPerAddress: 20, seed: 7 } as const;

export const MAIL_DOMAIN = 'mail.example.org';
export const ZONE = 'example.org';
export const OLD_HOST = '127.0.0.2';
export const NEW_HOST = '127.0.0.3';
/** The AAAA the old relay has; the new host has none, so the switch removes it. */
export const OLD_IPV6 = '2001:db8::2';
const NSD_ADDRESS = '127.0.0.1';

export type Side = 'old' | 'new';

export interface RehearsalOptions {
  /** Options of the old tree (root and domain are the rehearsal's). Default: 6 small addresses. */
  tree?: Partial<RelayTreeOptions>;
  /** Ports of the new host that never listen (a fault). */
  closedPorts?: number[];
  /** TTL of the mail domain's A and AAAA. Default 300. */
  dnsTtl?: number;
  /** Options of the stand-in checkout: extra chatmail.ini lines, its venv, its release. */
  relay?: Pick<StandinRelayOptions, 'iniLines' | 'venvPyinfra' | 'release'>;
  /**
   * The relay's TLS mode (chatmaild config.py): `acme` (default, mail.example.org, the
   * certificate in /var/lib/acme); `self` (`_mail.example.org`, /etc/ssl/certs/mailserver.pem
   * and /etc/ssl/private/mailserver.key); `external` (tls_external_cert_and_key names
   * certbot's live/ links, EXTERNAL_CERT and EXTERNAL_KEY, into archive/).
   */
  tls?: 'acme' | 'self' | 'external';
}

/** The external mode's paths, as certbot lays them out. */
export const EXTERNAL_CERT = `/etc/letsencrypt/live/${MAIL_DOMAIN}/fullchain.pem`;
export const EXTERNAL_KEY = `/etc/letsencrypt/live/${MAIL_DOMAIN}/privkey.pem`;

export interface Rehearsal {
  dir: string;
  /** The relay's mail_domain: `_mail.example.org` for a self-signed relay, else MAIL_DOMAIN. */
  mailDomain: string;
  /** Where the daemons read the certificate and key, as chatmaild's config.py decides it. */
  certPaths: { cert: string; key: string };
  /** `<dir>/plan.toml`. */
  plan: string;
  relayDir: string;
  oldRoot: string;
  newRoot: string;
  oldHostState: string;
  newHostState: string;
  /** What generateRelayTree wrote into the old root. */
  stats: RelayTreeStats;
  /** The checkout's HEAD, also in the old root's etc/chatmail-version. */
  relayHead: string;
  /** `ip:port` of each host's mail ports. */
  ports: Record<Side, Record<ServicePort, string>>;
  old: AgentProcess;
  new: AgentProcess;
  nsd: TestNsd;
  services: Record<Side, RelayServices>;
  /** When switchDns last completed, if it did. */
  dnsSwitchedAt?: Date;
  calls(): LoggedCall[];
  setFault(name: string, on: boolean): void;
  /** The DKIM TXT value of the old root's key (a real RSA key), as the zone serves it. */
  dkimValue: string;
  /** Serves another DKIM TXT value (undefined: none); resolves once NSD serves it. */
  setDkim(value: string | undefined): Promise<void>;
  /** Serves a CAA record of the mail domain (`0 issue "letsencrypt.org;accounturi=..."`; undefined: none). */
  setCaa(value: string | undefined): Promise<void>;
  /** Points `mail` A at the new host and removes its AAAA; resolves once NSD serves it. */
  switchDns(): Promise<void>;
  /** Switches DNS `delayMs` after the journal shows step 5 running. Returns a stop function. */
  autoSwitchDns(delayMs?: number): () => void;
  /** `<dir>/.cmmigrate/journal.json`, parsed; undefined while there is none. */
  journal(): any;
  /** The cmmigrate CLI, with `dir` as working directory. */
  run(args: string[], timeoutMs?: number): Promise<CliResult>;
  restartAgent(side: Side): Promise<void>;
  /** Stops everything; removes `dir` unless `keep`. */
  close(opts?: { keep?: boolean }): Promise<void>;
}

function zone(label: string, mailA: string, mailAAAA: string | undefined, ttl: number, dkim?: string, caa?: string): ZoneRecord[] {
  const domain = `${label}.${ZONE}`;
  return [
    // As `cmdeploy dns` recommends it (chatmail/relay cmdeploy/src/cmdeploy/dns.py get_filled_zone_file).
    ...(caa ? [{ name: label, type: 'CAA', data: caa }] : []),
    // As `cmdeploy dns` asks for it (chatmail/relay cmdeploy/src/cmdeploy/remote/rdns.py get_dkim_entry).
    ...(dkim ? [{ name: `opendkim._domainkey.${label}`, type: 'TXT', data: dkimZoneValue(dkim) }] : []),
    { name: '@', type: 'NS', data: `ns1.${ZONE}.` },
    { name: 'ns1', type: 'A', data: NSD_ADDRESS },
    { name: label, ttl, type: 'A', data: mailA },
    ...(mailAAAA ? [{ name: label, ttl, type: 'AAAA', data: mailAAAA }] : []),
    { name: label, type: 'MX', data: `10 ${domain}.` },
  ];
}

/** Free ports on `host`, all different. */
async function freePorts(host: string, n: number): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) {
    const p = await freePort(host);
    if (!out.includes(p)) out.push(p);
  }
  return out;
}

/** Replaces the generated (random) DKIM key with a real one, as opendkim-genkey makes it; returns the record's value. */
async function installDkimKey(root: string): Promise<string> {
  const file = path.join(root, 'etc/dkimkeys/opendkim.private');
  const pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const st = await fsp.stat(file);
  await fsp.writeFile(file, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  await fsp.utimes(file, st.atime, st.mtime);
  return dkimRecordValue(pair.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'));
}

/**
 * Puts a real certificate for `domain` where the relay's TLS mode reads it: through the
 * generated acmetool tree's live/ link (acme), at the self-signed paths (self), or in a
 * certbot layout whose live/ links the ini names (external).
 */
async function installRelayCertificate(root: string, domain: string, mode: 'acme' | 'self' | 'external'): Promise<string> {
  const { cert, key } = await selfSignedCertificate({ dnsNames: [domain, `mta-sts.${domain}`, `www.${domain}`] });
  if (mode === 'acme') {
    const certDir = await fsp.realpath(path.join(root, 'var/lib/acme/live', domain));
    // Through the existing files and the privkey symlink: owner, mode and links stay as acmetool made them.
    await fsp.writeFile(path.join(certDir, 'cert'), cert);
    await fsp.writeFile(path.join(certDir, 'fullchain'), cert);
    await fsp.writeFile(await fsp.realpath(path.join(certDir, 'privkey')), key);
  } else if (mode === 'self') {
    await fsp.mkdir(path.join(root, 'etc/ssl/certs'), { recursive: true });
    await fsp.mkdir(path.join(root, 'etc/ssl/private'), { recursive: true, mode: 0o710 });
    await fsp.writeFile(path.join(root, 'etc/ssl/certs/mailserver.pem'), cert, { mode: 0o644 });
    await fsp.writeFile(path.join(root, 'etc/ssl/private/mailserver.key'), key, { mode: 0o600 });
  } else {
    // certbot: archive/<name>/{fullchain,privkey}N.pem, live/<name>/*.pem relative links to them.
    const archive = path.join(root, 'etc/letsencrypt/archive', domain);
    const live = path.join(root, 'etc/letsencrypt/live', domain);
    await fsp.mkdir(archive, { recursive: true, mode: 0o700 });
    await fsp.mkdir(live, { recursive: true, mode: 0o700 });
    await fsp.chmod(path.join(root, 'etc/letsencrypt/archive'), 0o700);
    await fsp.chmod(path.join(root, 'etc/letsencrypt/live'), 0o700);
    await fsp.writeFile(path.join(archive, 'fullchain1.pem'), cert, { mode: 0o644 });
    await fsp.writeFile(path.join(archive, 'privkey1.pem'), key, { mode: 0o600 });
    const when = new Date('2026-10-01T04:05:06Z');
    for (const f of ['fullchain1.pem', 'privkey1.pem']) await fsp.utimes(path.join(archive, f), when, when);
    await fsp.symlink(`../../archive/${domain}/fullchain1.pem`, path.join(live, 'fullchain.pem'));
    await fsp.symlink(`../../archive/${domain}/privkey1.pem`, path.join(live, 'privkey.pem'));
  }
  return cert;
}

function planText(r: { domain: string; relayDir: string; agents: Record<Side, string>; nsd: string; ports: Record<Side, Record<ServicePort, string>>; caFile: string }): string {
  const q = JSON.stringify;
  return [
    `mail_domain = ${q(r.domain)}`,
    `state_dir = ".cmmigrate"`,
    `relay_dir = ${q(r.relayDir)}`,
    '',
    '[old]',
    `host = ${q(OLD_HOST)}`,
    `agent = ${q(r.agents.old)}`,
    `ssh = ${q(`root@${OLD_HOST}`)}`,
    '',
    '[new]',
    `host = ${q(NEW_HOST)}`,
    `agent = ${q(r.agents.new)}`,
    `ssh = ${q(`root@${NEW_HOST}`)}`,
    `ipv4 = ${q(NEW_HOST)}`,
    '# ipv6 omitted: no AAAA must remain',
    '',
    '[relay]',
    'mailboxes_dir = "/home/vmail/mail"',
    '',
    '[dns]',
    `servers = [${q(r.nsd)}]`,
    '',
    '[checks]',
    `old_tls = ${q(r.ports.old[993])}`,
    `ca_file = ${q(r.caFile)}`,
    '',
    '[checks.new_ports]',
    ...SERVICE_PORTS.map((p) => `${p} = ${q(r.ports.new[p])}`),
    '',
  ].join('\n');
}

/** Sets up the whole environment; see the module comment for the starting state. */
export async function setupRehearsal(opts: RehearsalOptions = {}): Promise<Rehearsal> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-rehearsal-'));
  const cleanups: (() => Promise<unknown>)[] = [];
  const undo = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  };
  try {
    const oldRoot = path.join(dir, 'old');
    const newRoot = path.join(dir, 'new');
    const oldHostState = path.join(dir, 'host-old');
    const newHostState = path.join(dir, 'host-new');
    const relayDir = path.join(dir, 'relay');
    const dnsTtl = opts.dnsTtl ?? 300;
    const tlsMode = opts.tls ?? 'acme';
    const label = tlsMode === 'self' ? '_mail' : 'mail';
    const domain = `${label}.${ZONE}`;
    const certPaths =
      tlsMode === 'self'
        ? { cert: '/etc/ssl/certs/mailserver.pem', key: '/etc/ssl/private/mailserver.key' }
        : tlsMode === 'external'
          ? { cert: EXTERNAL_CERT, key: EXTERNAL_KEY }
          : { cert: `/var/lib/acme/live/${domain}/fullchain`, key: `/var/lib/acme/live/${domain}/privkey` };
    const iniLines = [...(opts.relay?.iniLines ?? []), ...(tlsMode === 'external' ? [`tls_external_cert_and_key = ${EXTERNAL_CERT} ${EXTERNAL_KEY}`] : [])];
    const tree: RelayTreeOptions = { seed: 1, addresses: 6, messagesPerAddress: 8, uidBase: 5000, ...opts.tree, root: oldRoot, domain };
    if (tree.mailboxesDir !== undefined && tree.mailboxesDir !== '/home/vmail/mail') {
      throw new Error('setupRehearsal: the plan carries /home/vmail/mail; another mailboxesDir is not supported');
    }

    const stats = await generateRelayTree(tree);
    const cert = await installRelayCertificate(oldRoot, domain, tlsMode);
    if (tlsMode === 'external') {
      // The ini upstream's deploy wrote on the old host (basedeploy.py remote_chatmail_inipath).
      const deployed = path.join(oldRoot, 'usr/local/lib/chatmaild/chatmail.ini');
      await fsp.mkdir(path.dirname(deployed), { recursive: true });
      await fsp.writeFile(deployed, `[params]\nmail_domain = ${domain}\n${iniLines.join('\n')}\n`);
    }
    let dkim: string | undefined = await installDkimKey(oldRoot);
    let caa: string | undefined;
    const caFile = path.join(dir, 'relay-cert.pem');
    await fsp.writeFile(caFile, cert);
    await fsp.mkdir(path.join(newRoot, 'etc'), { recursive: true });
    await fsp.writeFile(path.join(newRoot, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
    await fsp.writeFile(path.join(newRoot, 'etc/group'), 'root:x:0:\n');
    // A deployed relay: every unit upstream's activate starts runs.
    for (const unit of upstreamRunningUnits()) setUnitState(oldHostState, unit, 'active');
    await fsp.mkdir(path.join(newHostState, 'units'), { recursive: true });

    const relay: StandinRelay = await makeStandinRelay({
      dir: relayDir,
      mailDomain: domain,
      hosts: {
        [OLD_HOST]: { role: 'old', root: oldRoot, hostState: oldHostState },
        [NEW_HOST]: { role: 'new', root: newRoot, hostState: newHostState },
      },
      newUidBase: (tree.uidBase ?? 5000) + 2000,
      ...opts.relay,
      iniLines,
    });
    const version = path.join(oldRoot, 'etc/chatmail-version');
    await fsp.writeFile(version, `${relay.head}\n`, { mode: 0o644 });

    const [oldPorts, newPorts] = await Promise.all([freePorts(OLD_HOST, SERVICE_PORTS.length + 1), freePorts(NEW_HOST, SERVICE_PORTS.length + 1)]);
    const agents: Record<Side, string> = { old: `${OLD_HOST}:${oldPorts[0]}`, new: `${NEW_HOST}:${newPorts[0]}` };
    const endpoints = (host: string, ports: number[]): Record<ServicePort, string> =>
      Object.fromEntries(SERVICE_PORTS.map((p, i) => [p, `${host}:${ports[i + 1]}`])) as Record<ServicePort, string>;
    const ports: Record<Side, Record<ServicePort, string>> = { old: endpoints(OLD_HOST, oldPorts), new: endpoints(NEW_HOST, newPorts) };

    const plan = path.join(dir, 'plan.toml');
    const init = await cmmigrate(['init', '--plan', plan, '--domain', domain, '--old', OLD_HOST, '--new', NEW_HOST, '--old-agent', agents.old, '--new-agent', agents.new]);
    if (init.code !== 0) throw new Error(`cmmigrate init failed (${init.code}):\n${init.stderr}`);

    let mailA = OLD_HOST;
    let mailAAAA: string | undefined = OLD_IPV6;
    const nsd = await startNsd(NSD_ADDRESS, { [ZONE]: zone(label, mailA, mailAAAA, dnsTtl, dkim, caa) });
    cleanups.push(() => nsd.stop());
    await fsp.writeFile(plan, planText({ domain, relayDir, agents, nsd: nsd.endpoint, ports, caFile }));

    const tls = path.join(dir, '.cmmigrate', 'tls');
    const sides: Record<Side, { root: string; hostState: string }> = { old: { root: oldRoot, hostState: oldHostState }, new: { root: newRoot, hostState: newHostState } };
    const startAgent = (side: Side): Promise<AgentProcess> =>
      startAgentProcess({
        listen: agents[side],
        root: sides[side].root,
        tlsDir: path.join(tls, side),
        env: hostToolsEnv(sides[side].hostState),
      });
    const agentOld = await startAgent('old');
    cleanups.push(() => agentOld.stop());
    const agentNew = await startAgent('new');
    cleanups.push(() => agentNew.stop());

    const servicesOld = await startRelayServices({ hostState: oldHostState, root: oldRoot, mailDomain: domain, endpoints: ports.old, certPaths });
    cleanups.push(() => servicesOld.stop());
    const servicesNew = await startRelayServices({ hostState: newHostState, root: newRoot, mailDomain: domain, endpoints: ports.new, closed: opts.closedPorts, certPaths });
    cleanups.push(() => servicesNew.stop());

    const journalFile = path.join(dir, '.cmmigrate', 'journal.json');
    const watchers = new Set<() => void>();
    const r: Rehearsal = {
      dir,
      mailDomain: domain,
      certPaths,
      plan,
      relayDir,
      oldRoot,
      newRoot,
      oldHostState,
      newHostState,
      stats,
      relayHead: relay.head,
      ports,
      old: agentOld,
      new: agentNew,
      nsd,
      services: { old: servicesOld, new: servicesNew },
      calls: () => relay.calls(),
      setFault: (name, on) => relay.setFault(name, on),
      async switchDns() {
        mailA = NEW_HOST;
        mailAAAA = undefined;
        await nsd.setZone(ZONE, zone(label, mailA, mailAAAA, dnsTtl, dkim, caa));
        r.dnsSwitchedAt = new Date();
      },
      dkimValue: dkim,
      async setDkim(value) {
        dkim = value;
        await nsd.setZone(ZONE, zone(label, mailA, mailAAAA, dnsTtl, dkim, caa));
      },
      async setCaa(value) {
        caa = value;
        await nsd.setZone(ZONE, zone(label, mailA, mailAAAA, dnsTtl, dkim, caa));
      },
      autoSwitchDns(delayMs = 0) {
        let delay: NodeJS.Timeout | undefined;
        const poll = setInterval(() => {
          if (r.journal()?.steps?.['5']?.state !== 'running') return;
          clearInterval(poll);
          delay = setTimeout(() => {
            r.switchDns().catch((err: unknown) => process.stderr.write(`rehearsal: switching DNS failed: ${String(err)}\n`));
          }, delayMs);
        }, 100);
        const stop = (): void => {
          clearInterval(poll);
          if (delay) clearTimeout(delay);
          watchers.delete(stop);
        };
        watchers.add(stop);
        return stop;
      },
      journal() {
        try {
          return JSON.parse(fs.readFileSync(journalFile, 'utf8'));
        } catch {
          return undefined;
        }
      },
      run: (args, timeoutMs) => cmmigrate(args, { cwd: dir, timeoutMs }),
      async restartAgent(side) {
        await r[side].stop();
        r[side] = await startAgent(side);
      },
      async close(o = {}) {
        for (const stop of [...watchers]) stop();
        await Promise.all([r.services.old.stop(), r.services.new.stop(), r.old.stop(), r.new.stop(), nsd.stop()]);
        if (!o.keep) await fsp.rm(dir, { recursive: true, force: true });
      },
    };
    return r;
  } catch (err) {
    await undo();
    await fsp.rm(dir, { recursive: true, force: true });
    throw err;
  }
}
