/**
 * chatmail.ini as the relay's chatmaild reads it (iniconfig): the mail_domain and the
 * mailboxes dir of a checkout's configuration.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CmError } from '../../proto';
import { chatmailIniLocation } from './ini-location';


export interface ChatmailIni {
  file: string;
  mailDomain: string;
  /** The `mailboxes_dir` key as written, if it is. */
  mailboxesDirKey?: string;
  /** Where the address directories live: the key, or chatmaild's default `/home/vmail/mail/<mail_domain>`. */
  mailboxesDir: string;
  /**
   * The directory the agents carry (the plan's `relay.mailboxes_dir`): the parent of
   * `mailboxesDir` when that ends in `/<mail_domain>`, as by default (`/home/vmail/mail`).
   */
  planMailboxesDir: string;
  /** Every key of the [params] section. */
  params: Record<string, string>;
}

/**
 * Parses INI text as the relay's chatmaild does (iniconfig): `[section]` lines,
 * `name = value` (split at the first `=`), whole-line comments with `#` or `;`, indented
 * continuation lines. Returns the sections' keys.
 */
export function parseIni(text: string, file: string): Record<string, Record<string, string>> {
  const sections: Record<string, Record<string, string>> = {};
  let section: Record<string, string> | undefined;
  let last: string | undefined;
  const bad = (n: number, why: string): CmError =>
    new CmError('precondition.chatmail_ini', `${file}, line ${n}: ${why}`, { hint: `correct line ${n} of ${file}`, details: { file, line: n } });
  text.split('\n').forEach((raw, i) => {
    const n = i + 1;
    const line = raw.replace(/\r$/, '');
    const t = line.trim();
    if (t === '' || t.startsWith('#') || t.startsWith(';')) return;
    if (/^\s/.test(line)) {
      if (!section || last === undefined) throw bad(n, 'an indented line continues no value');
      section[last] += `\n${t}`;
      return;
    }
    if (t.startsWith('[')) {
      const m = /^\[([^\]]+)\]/.exec(t);
      if (!m) throw bad(n, `unexpected line ${JSON.stringify(t)}`);
      section = sections[m[1]] ??= {};
      last = undefined;
      return;
    }
    const eq = t.indexOf('=');
    if (eq < 0) throw bad(n, `unexpected line ${JSON.stringify(t)}: expected name = value`);
    if (!section) throw bad(n, 'a value before the first [section]');
    const name = t.slice(0, eq).trim();
    if (Object.prototype.hasOwnProperty.call(section, name)) throw bad(n, `${name} is set twice`);
    section[name] = t.slice(eq + 1).trim();
    last = name;
  });
  return sections;
}

/**
 * Reads the ini cmdeploy would read in `relayDir` (ini-location.ts: `$CHATMAIL_INI` of `env`,
 * else `DIR/chatmail.ini`); undefined when there is none.
 */
export async function readChatmailIni(relayDir: string, env: Readonly<Record<string, string | undefined>> = {}): Promise<ChatmailIni | undefined> {
  const file = chatmailIniLocation(relayDir, env).file;
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CmError('precondition.chatmail_ini', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  const params = parseIni(text, file).params;
  const mailDomain = params?.mail_domain?.trim();
  if (!params || !mailDomain) {
    throw new CmError('precondition.chatmail_ini', `${file} has no mail_domain in a [params] section`, {
      hint: `chatmail.ini must be the file the relay was deployed with; its [params] section names mail_domain`,
      details: { file },
    });
  }
  const key = params.mailboxes_dir?.trim() || undefined;
  const mailboxesDir = path.posix.normalize(key ?? `/home/vmail/mail/${mailDomain}`).replace(/(.)\/$/, '$1');
  const planMailboxesDir = path.posix.basename(mailboxesDir) === mailDomain ? path.posix.dirname(mailboxesDir) : mailboxesDir;
  return { file, mailDomain, mailboxesDirKey: key, mailboxesDir, planMailboxesDir, params };
}
