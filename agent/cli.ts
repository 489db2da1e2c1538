#!/usr/bin/env -S node --max-old-space-size=256 --max-semi-space-size=4
/**
 * cmmigrate-agent: the daemon that runs as root on the old and the new relay host.
 * `serve` runs in the foreground, logs JSON lines to stderr, and stops on SIGTERM/SIGINT.
 */
import { Command, CommanderError } from 'commander';
import { asCmError, CmError, DEFAULT_AGENT_PORT, DEFAULT_MAILBOXES_DIR, quietIpServernameWarning, SAME_COMMAND_AGAIN, VERSION, withRerun } from '../proto';
import { createLogger } from './log';
import { DEFAULT_STALL_SECONDS, startAgent, type RunningAgent } from './server';

function main(argv: string[]): void {
  quietIpServernameWarning();
  const program = new Command('cmmigrate-agent')
    .description('The cmmigrate agent: serves a chatmail relay\'s state to the other agent and to the cmmigrate controller, over gRPC with mutual TLS.')
    .version(VERSION)
    .exitOverride();

  program
    .command('serve')
    .description('serve in the foreground until SIGTERM or SIGINT')
    .requiredOption('--listen <host:port>', `address to listen on (the plan's agent address; default port ${DEFAULT_AGENT_PORT})`)
    .option('--root <dir>', 'the host root the relay\'s paths are resolved under', '/')
    .requiredOption('--tls-dir <dir>', 'this agent\'s TLS material from `cmmigrate init` (ca.crt, agent.crt, agent.key)')
    .option('--mailboxes-dir <dir>', 'the relay\'s mailboxes_dir (chatmail.ini)', DEFAULT_MAILBOXES_DIR)
    .option('--state-dir <dir>', 'where this agent keeps its record of what it wrote (default <root>/var/lib/cmmigrate)')
    .option('--stall-timeout <seconds>', `fail a pass when the other agent sends nothing for this long (default ${DEFAULT_STALL_SECONDS})`, (v) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n <= 0) throw new CmError('usage.bad_option', `--stall-timeout ${v}: expected a number of seconds`);
      return n;
    })
    .option('--no-journal', 'keep no change journal: every pass and quick verify walks every root in full')
    .option('--python <path>', 'the python3 that runs the change journal\'s fanotify helper', 'python3')
    .option('--log-level <level>', 'pino log level: trace, debug, info, warn, error', 'info')
    .addHelpText(
      'after',
      `
It reads and writes only the relay's state under --root: the mailboxes dir, /etc/dkimkeys,
/var/lib/acme, /var/spool/postfix, and when present /etc/chatmail-nocreate,
/etc/ssl/certs/mailserver.pem, /etc/ssl/private/mailserver.key, /home/vmail/passdb.sqlite.
User and group names come from <root>/etc/passwd and <root>/etc/group.

From the moment it serves it keeps a change journal of those paths (Linux fanotify, read
by a small helper in the host's python3; it needs root), so that a later pass and a quick
verify look only at what changed. Whenever the journal may have missed a change (the
helper stopped, its queue overflowed, the agent restarted), the next pass walks that root
in full and says why.

For the controller it also runs a fixed list of host operations, nothing else: systemctl
is-active/stop/start/restart of the relay's units (postfix, dovecot, opendkim, doveauth,
chatmail-metadata, lastlogin, filtermail, filtermail-incoming, chatmail-expire.timer,
nginx), postfix set-permissions and postsuper -s (the host's own commands, from PATH,
without a shell), and reading /etc/chatmail-version, free disk and the size of the roots.

Example:
  cmmigrate-agent serve --listen 127.0.0.2:${DEFAULT_AGENT_PORT} --root / --tls-dir /opt/cmmigrate/tls`,
    )
    .action(async (o: { listen: string; root: string; tlsDir: string; mailboxesDir: string; stateDir?: string; stallTimeout?: number; logLevel: string; journal: boolean; python: string }) => {
      const log = createLogger(o.logLevel);
      // Handlers first: a signal that arrives while the agent starts must still stop it cleanly.
      let agent: RunningAgent | null = null;
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, 'stopping');
        void (agent ? agent.stop() : Promise.resolve()).then(() => {
          log.info('stopped');
          process.exit(0);
        });
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      agent = await startAgent({ listen: o.listen, root: o.root, tlsDir: o.tlsDir, mailboxesDir: o.mailboxesDir, stateDir: o.stateDir, stallSeconds: o.stallTimeout, log, journal: o.journal, python: o.python });
      if (stopping) await agent.stop();
    });

  program.parseAsync(argv).catch((err: unknown) => {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
    const e = withRerun(asCmError(err), SAME_COMMAND_AGAIN);
    process.stderr.write(`cmmigrate-agent: error: ${e.message}\n${e.hint ? `  hint: ${e.hint}\n` : ''}`);
    process.exit(e.exitCode);
  });
}

main(process.argv);
