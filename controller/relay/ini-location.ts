/**
 * Which chatmail.ini cmdeploy reads: `--config PATH`, else `$CHATMAIL_INI`, else
 * `./chatmail.ini`, each relative to the working directory (the checkout root)
 * (chatmail/relay `cmdeploy/src/cmdeploy/cmdeploy.py` `add_config_option`:
 * `default=Path(os.environ.get("CHATMAIL_INI", "chatmail.ini"))`; `run_cmd` hands it on to
 * the deploy as CHATMAIL_INI). Preflight must read the same file. Pure.
 */
import * as path from 'node:path';

export interface IniLocation {
  file: string;
  /** What chose it. */
  from: '--config' | 'CHATMAIL_INI' | 'default';
}

/** The ini cmdeploy run in `checkout` would read, given its environment and `--config` if passed. */
export function chatmailIniLocation(checkout: string, env: Readonly<Record<string, string | undefined>>, config?: string): IniLocation {
  const root = path.resolve(checkout);
  if (config !== undefined) return { file: path.resolve(root, config), from: '--config' };
  const fromEnv = env.CHATMAIL_INI;
  // os.environ.get returns "" for an empty variable, and Path("") is ".": a directory, which
  // then fails to read; treat it as given, so the error names it.
  if (fromEnv !== undefined) return { file: path.resolve(root, fromEnv), from: 'CHATMAIL_INI' };
  return { file: path.join(root, 'chatmail.ini'), from: 'default' };
}
