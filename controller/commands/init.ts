/** `cmmigrate init`: parses its options and writes the plan and TLS material (controller/ops/init.ts). */
import { Command } from 'commander';
import type { CommandContext } from '../command-context';
import { DEFAULT_AGENT_PORT } from '../../proto/address';
import type { InitOptions } from '../ops/init';
import { loadOps } from './load-ops';

/** The `init` command. */
export function initCommand(ctx: CommandContext): Command {
  return new Command('init')
    .summary('write a plan file and the TLS material of a migration')
    .description(
      'Write a plan file for moving a chatmail relay from an old host to a new one, and make ' +
        "this migration's TLS material beside it (in .cmmigrate/tls): a CA, the controller's " +
        'certificate, and one directory per agent. Running it again with the same options ' +
        'changes nothing; a plan you edited is kept.',
    )
    .requiredOption('--plan <file>', 'plan file to write; .cmmigrate/ is made in its directory')
    .option('--domain <domain>', "the relay's mail_domain, as in its chatmail.ini (read from --relay-dir when not given)")
    .requiredOption('--old <host>', 'the host the relay runs on now (IP address or name)')
    .requiredOption('--new <host>', 'the host the relay moves to (IP address or name)')
    .option('--old-agent <host:port>', `where the old host's agent listens (default: OLD:${DEFAULT_AGENT_PORT})`)
    .option('--new-agent <host:port>', `where the new host's agent listens (default: NEW:${DEFAULT_AGENT_PORT})`)
    .option('--relay-dir <dir>', 'your chatmail/relay checkout (with chatmail.ini), from which `cmmigrate run` runs cmdeploy; mail_domain and mailboxes_dir are read from its chatmail.ini')
    .option('--old-ssh <dest>', 'ssh destination of the old host (default: root@OLD)')
    .option('--new-ssh <dest>', 'ssh destination of the new host (default: root@NEW)')
    .option('--new-ipv4 <addr>', "the new host's public IPv4 address, for the A record (default: NEW, if it is one)")
    .option('--new-ipv6 <addr>', "the new host's public IPv6 address, for the AAAA record (without it, step 5 wants no AAAA record)")
    .option('--force', 'replace an existing plan and make a new CA (both agents then need their new material)')
    .addHelpText(
      'after',
      '\nExample:\n' +
        '  $ cmmigrate init --plan move/plan.toml --relay-dir ~/relay \\\n' +
        '      --old 203.0.113.5 --new 198.51.100.7 --new-ipv6 2001:db8::7\n' +
        '  $ cmmigrate init --plan move/plan.toml --domain mail.example.org \\\n' +
        '      --old 203.0.113.5 --new 198.51.100.7\n' +
        '  $ cmmigrate init --plan move/plan.toml --domain mail.example.org \\\n' +
        '      --old 203.0.113.5 --new 2001:db8::7 --new-agent [2001:db8::7]:7900\n',
    )
    .action(async (opts: InitOptions) => {
      const out = ctx.reporter(false);
      const { runInit } = loadOps();
      const result = await runInit(opts);
      for (const line of result.lines) out.item(line);
    });
}
