/**
 * A remote script that ended with an exit code other than 0, as the error a person reads:
 * apt's own message, a host without systemd, or the script's last lines.
 */
import { CmError, ExitCode, RERUN } from '../../proto';
import { parseLines, valueOf } from '../remote-facts';
import { UNIT_NAME } from '../remote-layout';
import type { RemoteResult, SshTarget } from '../ssh';

/** The last `n` non-empty lines of `text`, joined with ` | `. */
export function lastLines(text: string, n = 5): string {
  return text.trim().split('\n').filter(Boolean).slice(-n).join(' | ');
}

/** apt's own error lines ("E: ..."), else its last lines. */
function aptMessage(stderr: string): string {
  const errors = stderr.split('\n').filter((l) => l.startsWith('E: '));
  return errors.length ? errors.slice(-3).join(' | ') : lastLines(stderr, 3);
}

/** A script that ended with an exit code other than 0, as the error a person reads. */
export function remoteFailure(target: SshTarget, what: string, r: RemoteResult): CmError {
  const where = `the ${target.side} host (${target.destination})`;
  const fail = valueOf(parseLines(r.stdout), 'fail');
  const details = { host: target.destination, side: target.side, exit: r.code };
  if (fail === 'apt.install_failed') {
    return new CmError('apt.install_failed', `apt-get could not install nodejs on ${where}: ${aptMessage(r.stderr)}`, {
      hint: `run \`apt-get install nodejs\` there to see the whole message (package sources, a full disk, a held dpkg lock), then run ${RERUN}`,
      details,
    });
  }
  if (fail === 'apt.purge_failed') {
    return new CmError('apt.purge_failed', `apt-get could not remove the packages install-agent installed on ${where}: ${aptMessage(r.stderr)}`, {
      hint: `run \`apt-get purge nodejs\` there to see the whole message, then run ${RERUN}`,
      details,
    });
  }
  if (fail === 'uninstall.stop_failed') {
    return new CmError('uninstall.stop_failed', `${UNIT_NAME} is still active on ${where} after systemctl stop`, {
      hint: `look at \`systemctl status ${UNIT_NAME}\` there, then run ${RERUN}`,
      details,
    });
  }
  if (/not been booted with systemd|Failed to connect to bus/.test(r.stderr)) {
    return new CmError('precondition.no_systemd', `${what} failed on ${where}: systemd is not running there (${lastLines(r.stderr, 1)})`, {
      hint: 'install on a Debian host booted with systemd, or start cmmigrate-agent by hand (README: "Starting an agent by hand")',
      details,
      exitCode: ExitCode.precondition,
    });
  }
  return new CmError('remote.failed', `${what} failed on ${where} (exit ${r.code}): ${lastLines(r.stderr) || 'no message'}`, {
    hint: `run ${RERUN}; if it fails the same way, log in (ssh ${target.destination}) and look at /opt/cmmigrate and \`systemctl status ${UNIT_NAME}\``,
    details,
  });
}
