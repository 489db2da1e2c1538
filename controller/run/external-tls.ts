/**
 * Step 2's carry of an externally managed certificate (`tls_external_cert_and_key` in
 * chatmail.ini): chatmail/relay's configure stage requires both files on the host
 * (cmdeploy/src/cmdeploy/external/deployer.py: "External TLS file not found on server"), so
 * they go from the old host to the new one, at the same paths, before step 2's cmdeploy runs.
 * The old agent reads the paths its own deployed chatmail.ini names; they must be the ones
 * the checkout's chatmail.ini names (what configure checks). The content travels with its
 * SHA-256, checked on the new host's disk; the journal keeps what was written, so a rerun
 * replaces only its own earlier copy and never a file the operator put there.
 */
import { CmError } from '../../proto';
import type { TlsSetup } from '../relay/tls-mode';
import type { RunContext } from './context';
import { relayFacts } from './relay-units';

/** What --dry-run says for step 2 in external TLS mode (nothing when chatmail.ini cannot be read: preflight says why). */
export async function externalTlsPlan(ctx: Pick<RunContext, 'relayDir' | 'rerun'>): Promise<string[]> {
  const tls = await relayFacts(ctx).then(
    (f) => f.tls,
    () => undefined,
  );
  if (tls?.mode !== 'external') return [];
  return [
    `carry ${tls.certPath} and ${tls.keyPath} (tls_external_cert_and_key) from the old agent to the new one, at the same paths, SHA-256 checked, owner names, mode and mtime kept (a symlink is carried as the file it leads to); step 2's configure checks they exist`,
  ];
}

/** Carries the two external TLS files to the new host (a no-op in the other TLS modes). */
export async function carryExternalTls(ctx: RunContext, tls: TlsSetup): Promise<void> {
  if (tls.mode !== 'external') return;
  const { plan, journal } = ctx;
  const want = [tls.certPath, tls.keyPath];
  ctx.out.command({ side: 'old', host: plan.old.host, command: `read ${want.join(' ')}`, op: 'tls.external_read', where: `on the old host ${plan.old.host}, through its agent` });
  const files = await ctx.hosts.old.externalTlsRead();
  const have = files.map((f) => f.path);
  const missing = want.filter((p) => !have.includes(p));
  if (missing.length > 0 || have.length !== want.length) {
    throw new CmError(
      'precondition.tls_files_missing',
      `chatmail.ini sets tls_external_cert_and_key = ${want.join(' ')}, but the old host ${plan.old.host} ${have.length ? `deployed ${have.join(' ')}` : 'has neither file (or another tls_external_cert_and_key in /usr/local/lib/chatmaild/chatmail.ini)'}`,
      { hint: `deploy the old host with the chatmail.ini of the checkout (or correct it), so that both name the same files, then run ${ctx.rerun}`, details: { missing } },
    );
  }
  // Ordered as chatmail.ini names them: certificate, then key.
  files.sort((a, b) => want.indexOf(a.path) - want.indexOf(b.path));
  const replace: Record<string, string> = {};
  for (const r of journal.data.external_tls ?? []) replace[r.path] = r.sha256;
  ctx.out.command({ side: 'new', host: plan.new.host, command: `write ${want.join(' ')}`, op: 'tls.external_write', where: `on the new host ${plan.new.host}, through its agent` });
  const written = await ctx.hosts.new.externalTlsWrite({ files, replace });
  const at = new Date().toISOString();
  journal.update((d) => {
    const kept = (d.external_tls ?? []).filter((r) => !want.includes(r.path));
    d.external_tls = [
      ...kept,
      ...written.map((w) => {
        const f = files.find((x) => x.path === w.path)!;
        return { path: w.path, sha256: w.sha256, ...(f.resolved ? { resolved: f.resolved } : {}), result: w.result, at };
      }),
    ];
  });
  for (const f of files) {
    const w = written.find((x) => x.path === f.path);
    const how = w?.result === 'unchanged' ? 'already there with the same content' : w?.result === 'replaced' ? 'replaced the copy an earlier attempt wrote' : 'written';
    ctx.out.info(`  ${f.path}: ${how} (${f.size} bytes, ${f.user}:${f.group}, mode ${f.mode.toString(8).padStart(4, '0')}, SHA-256 checked)${f.resolved ? `; a symlink on the old host, to ${f.resolved}: carried as that file` : ''}`);
  }
  ctx.emit('external_tls', { files: written.map((w) => ({ path: w.path, result: w.result })) });
}

/** The summary's reminder: what renews the external certificate must move too. */
export function externalTlsReminder(ctx: Pick<RunContext, 'journal'>): string[] {
  const carried = ctx.journal.data.external_tls ?? [];
  if (carried.length === 0) return [];
  const links = carried.filter((c) => c.resolved).map((c) => `${c.path} (a symlink on the old host to ${c.resolved}, now a regular file)`);
  return [
    `move whatever renews the external TLS files ${carried.map((c) => c.path).join(' and ')} (certbot, a proxy, a cron job) to the new host: nothing of the relay renews them`,
    ...(links.length ? [`carried as the files they lead to: ${links.join(', ')}; recreate the links if the renewal on the new host writes elsewhere`] : []),
  ];
}
