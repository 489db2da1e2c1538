/**
 * The DNS records that must match what the move carries: the DKIM TXT record of the carried
 * key, and a CAA record that pins an ACME account (chatmail/relay cmdeploy/src/cmdeploy/dns.py
 * get_filled_zone_file, remote/rdns.py get_dkim_entry). Checked at preflight against the old
 * host (a warning) and after step 6 against the new one (an error naming the record and the
 * value it must have). The public key is derived on the host by its agent (HostOp
 * dkim.public_key): no private key crosses the wire.
 */
import { CmError } from '../../proto';
import { findAuthoritativeServers, parseNameServers, queryCaa, queryTxt } from '../dns';
import { checkCaa } from '../relay/caa';
import { checkDkimRecordKey, dkimRecordName, dkimZoneValue } from '../relay/dkim';
import type { RunContext } from './context';
import { relayFacts } from './relay-units';

/** Problems with the relay's DKIM and CAA records, seen from the `side` host's carried keys. */
export async function dnsKeyProblems(ctx: RunContext, side: 'old' | 'new'): Promise<{ problems: string[]; notes: string[] }> {
  const { plan } = ctx;
  const { shape } = await relayFacts(ctx);
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
  const caa = await queryCaa(plan.mailDomain, servers);
  const result = checkCaa(caa as never, undefined);
  if (result.pinned.length > 0) {
    // The account URL is not stored by acmetool (it asks the ACME server), so a pin can be
    // checked here only for the account's presence on the host: upstream's `cmdeploy dns`
    // prints the record with `acmetool account-url` run there.
    notes.push(`CAA: ${plan.mailDomain} pins the ACME account ${result.pinned.join(', ')}: the carried /var/lib/acme/accounts/ must hold it (upstream's cmdeploy dns prints the record with acmetool account-url on the host)`);
  }
  return { problems, notes };
}

/** After step 6: a DKIM record that does not match the carried key is an error. */
export async function requireDnsKeys(ctx: RunContext): Promise<void> {
  const { problems, notes } = await dnsKeyProblems(ctx, 'new');
  for (const n of notes) ctx.out.info(`  ${n}`);
  if (problems.length > 0) {
    throw new CmError('step.dns_record_mismatch', problems.join('; '), {
      hint: `set the record at your DNS provider (other relays reject mail signed with a key the record does not carry), then run cmmigrate run --plan ${ctx.opts.plan} --only 6`,
    });
  }
}
