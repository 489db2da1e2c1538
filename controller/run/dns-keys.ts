/**
 * The DNS records that must match what the move carries: the DKIM TXT record of the carried
 * key, and a CAA record that pins an ACME account (chatmail/relay cmdeploy/src/cmdeploy/dns.py
 * get_filled_zone_file, remote/rdns.py get_dkim_entry). Checked at preflight against the old
 * host (a warning) and after step 6 against the new one (an error naming the record and the
 * value it must have). The public key is derived on the host by its agent (HostOp
 * dkim.public_key): no private key crosses the wire. The ACME account's URL comes from
 * `acmetool account-url` on the host, as upstream's `cmdeploy dns` gets it (remote/rdns.py
 * perform_initial_checks); acmetool keeps no URL, it asks the ACME server with the account key
 * (relay/caa.ts). When the new host's acmetool cannot answer, the old host's URL (kept in the
 * journal at preflight) stands for it once step 4's verify found the carried /var/lib/acme,
 * account keys included, identical on both hosts.
 */
import { CmError } from '../../proto';
import { findAuthoritativeServers, parseNameServers, queryCaa, queryTxt } from '../dns';
import { checkCaa, type CaaRecord } from '../relay/caa';
import { checkDkimRecordKey, dkimRecordName, dkimZoneValue } from '../relay/dkim';
import type { RunContext } from './context';
import { relayFacts } from './relay-units';

/** Problems with the relay's DKIM and CAA records, seen from the `side` host's carried keys. */
export async function dnsKeyProblems(ctx: RunContext, side: 'old' | 'new'): Promise<{ problems: string[]; notes: string[] }> {
  const { plan } = ctx;
  const { shape, tls } = await relayFacts(ctx);
  const problems: string[] = [];
  const notes: string[] = [];
  const servers = plan.dnsServers.length > 0 ? parseNameServers(plan.dnsServers) : (await findAuthoritativeServers(plan.mailDomain)).servers;
  if (!shape.ipv4) {
    const pub = await ctx.hosts[side].dkimPublicKey();
    const name = dkimRecordName(plan.mailDomain);
    const check = checkDkimRecordKey(plan.mailDomain, await queryTxt(name, servers), pub);
    if (check.ok) notes.push(`DKIM: ${name} carries the public key of the ${side} host's /etc/dkimkeys/opendkim.private`);
    else problems.push(`${check.reason}; the record must be: ${name}. TXT ${dkimZoneValue(check.expected)}`);
  }
  // node's CaaRecord has the same fields, without the index signature.
  const caa = (await queryCaa(plan.mailDomain, servers)).map((r): CaaRecord => ({ ...r }));
  const pinned = checkCaa(caa, undefined).pinned;
  if (pinned.length > 0) {
    const account = tls.mode === 'acme' ? await accountUrl(ctx, side) : undefined;
    if (!account) {
      notes.push(
        tls.mode === 'acme'
          ? `CAA: ${plan.mailDomain} pins the ACME account ${pinned.join(', ')}; acmetool account-url on the ${side} host found no URL to compare (run it there): the carried /var/lib/acme/accounts/ must hold that account`
          : `CAA: ${plan.mailDomain} pins the ACME account ${pinned.join(', ')}; the relay does not use acmetool (TLS ${tls.mode}): whatever renews its certificate must use that account`,
      );
    } else {
      const result = checkCaa(caa, account.url);
      if (result.ok) notes.push(`CAA: ${plan.mailDomain} pins the ACME account ${account.url} of the ${side} host (${account.from})`);
      else problems.push(`${result.reason} (${account.from}); the record must be: ${plan.mailDomain}. CAA ${result.expected}`);
    }
  }
  return { problems, notes };
}

/**
 * The ACME account URL of the `side` host's /var/lib/acme and where it came from; at
 * preflight the old host's is kept in the journal for the fallback after step 6.
 */
async function accountUrl(ctx: RunContext, side: 'old' | 'new'): Promise<{ url: string; from: string } | undefined> {
  const url = await ctx.hosts[side].acmeAccountUrl().catch(() => undefined);
  if (url) {
    if (side === 'old' && ctx.journal.data.acme_account_url !== url) ctx.journal.update((d) => void (d.acme_account_url = url));
    return { url, from: `acmetool account-url on the ${side} host` };
  }
  const quick = ctx.journal.data.verify.quick;
  const old = ctx.journal.data.acme_account_url;
  if (side === 'new' && old && quick?.state === 'done' && quick.differences === 0) {
    return { url: old, from: "acmetool account-url on the old host at preflight; the carried account key is the same on both hosts (step 4's verify)" };
  }
  return undefined;
}

/** After step 6: a DKIM record that does not match the carried key is an error. */
export async function requireDnsKeys(ctx: RunContext): Promise<void> {
  const { problems, notes } = await dnsKeyProblems(ctx, 'new');
  for (const n of notes) ctx.out.info(`  ${n}`);
  if (problems.length > 0) {
    throw new CmError('step.dns_record_mismatch', problems.join('; '), {
      hint: `set the record at your DNS provider (other relays reject mail signed with a key a DKIM record does not carry; Let's Encrypt refuses renewals for an account a CAA record does not name), then run cmmigrate run --plan ${ctx.opts.plan} --only 6`,
    });
  }
}
