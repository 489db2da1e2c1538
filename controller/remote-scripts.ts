/**
 * The shell scripts that install-agent and uninstall-agent run on a relay host (POSIX sh,
 * Debian's base tools only: coreutils, sed, mawk, tar, apt, systemctl). Each one gets
 * its inputs as variables set at its top and answers with `key=value` lines on stdout,
 * which remote-facts.ts reads; everything meant for people goes to stderr. The decisions
 * (what to change, whether a port is taken) are made in TypeScript, not here.
 */
import { shQuote } from './ssh';
import { managedFiles, UNIT_NAME, type ManagedFile, type RemoteLayout } from './remote-layout';

/** Exit code of a script that stopped on a known problem (its `fail=` line says which). */
export const EXIT_KNOWN_FAILURE = 3;
/** Exit code of the apply script when the agent did not start listening. */
export const EXIT_NOT_LISTENING = 5;

function script(vars: Record<string, string>, body: string): string {
  const lines = Object.entries(vars).map(([k, v]) => `${k}=${shQuote(v)}`);
  // CMMIGRATE_PREFIX is read only by the tests' stand-in systemctl: only a test layout has a prefix.
  const test = vars.PREFIX ? ['export CMMIGRATE_PREFIX="$PREFIX"'] : [];
  return [...lines, ...test, "say() { printf '%s=%s\\n' \"$1\" \"$2\"; }", body].join('\n');
}

function common(l: RemoteLayout): Record<string, string> {
  return { PREFIX: l.prefix, D: l.dir, UNIT: UNIT_NAME, UNIT_FILE: l.unitFile, UNIT_DIR: l.unitDir, MARKER: l.packagesMarker };
}

/** The port as /proc/net/tcp writes it: 4 upper-case hex digits. */
export function portHex(port: number): string {
  return port.toString(16).toUpperCase().padStart(4, '0');
}

const LISTENERS = `listeners() {
  for t in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$t" ] && awk -v port="$PORT_HEX" 'NR > 1 && $4 == "0A" { split($2, a, ":"); if (a[2] == port) print a[1] }' "$t"
  done
  return 0
}`;

/** Facts about the host and about what is installed already. Changes nothing. */
export function probeScript(l: RemoteLayout, port: number): string {
  const files = managedFiles(l).map((f) => `${f.name} ${f.path}`).join('\n');
  return script(
    { ...common(l), OS_RELEASE: l.osRelease, PORT_HEX: portHex(port), FILES: files },
    `set -u
${LISTENERS}
say uid "$(id -u)"
say hostname "$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)"
if [ -r "$OS_RELEASE" ]; then
  say os_release yes
  for k in ID VERSION_ID PRETTY_NAME; do
    say "os_$k" "$(sed -n "s/^$k=//p" "$OS_RELEASE" | head -n 1 | sed -e 's/^"\\(.*\\)"$/\\1/' -e "s/^'\\(.*\\)'\\$/\\1/")"
  done
fi
if command -v systemctl >/dev/null 2>&1; then
  say systemctl "$(systemctl --version 2>/dev/null | head -n 1)"
  say active "$(systemctl is-active "$UNIT" 2>/dev/null)"
  systemctl is-active "$UNIT" 2>&1 >/dev/null | grep -q -e 'not been booted with systemd' -e 'Failed to connect to bus' && say systemd_down yes
fi
[ -L "$UNIT_DIR/multi-user.target.wants/$UNIT" ] && say enabled yes
if n=$(command -v node 2>/dev/null); then say node_path "$n"; say node_version "$("$n" --version 2>/dev/null)"; fi
command -v apt-get >/dev/null 2>&1 && say apt yes
[ -d "$D" ] && say dir yes
[ -d "$D/tls" ] && say tls_dir yes
[ -d "$D/state" ] && say state_dir yes
[ -f "$MARKER" ] && say packages "$(tr '\\n' ' ' <"$MARKER")"
echo "$FILES" | while read -r name path; do
  [ -f "$path" ] && say "file_$name" "$(sha256sum <"$path" | cut -d ' ' -f 1) $(stat -c '%a %u %g' "$path")"
done
[ -f "$UNIT_FILE" ] && say unit_listen "$(sed -n 's/^ExecStart=.* --listen \\([^ ]*\\) .*/\\1/p' "$UNIT_FILE" | head -n 1)"
listeners | sed 's/^/listen=/'
exit 0`,
  );
}

/**
 * Installs Debian's nodejs with apt-get and records, in the marker file, the packages
 * that this added (nodejs and the libraries it pulled in), so that uninstall-agent
 * removes those and nothing else.
 */
export function installNodeScript(l: RemoteLayout): string {
  return script(
    common(l),
    `set -u
export DEBIAN_FRONTEND=noninteractive
installed() { dpkg-query -W -f '\${db:Status-Abbrev} \${Package}\\n' 2>/dev/null | awk '$1 == "ii" { print $2 }' | sort; }
before=$(mktemp) && after=$(mktemp) || exit 1
trap 'rm -f "$before" "$after"' EXIT
installed >"$before"
apt-get -q -o DPkg::Lock::Timeout=300 update >&2 || echo "apt-get update failed; trying with the package lists there are" >&2
apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends nodejs >&2
rc=$?
installed >"$after"
added=$(comm -13 "$before" "$after" | tr '\\n' ' ')
say added "$added"
if [ -n "$added" ]; then
  mkdir -p "$D" && chmod 0755 "$D"
  for p in $added; do echo "$p"; done >>"$MARKER"
fi
if [ $rc -ne 0 ]; then say fail apt.install_failed; exit ${EXIT_KNOWN_FAILURE}; fi
# Debian's nodejs, even where an older node comes first on the PATH.
say node_path /usr/bin/node
say node_version "$(/usr/bin/node --version 2>/dev/null)"
exit 0`,
  );
}

export interface ApplyInputs {
  /** Files in the uploaded tar (stdin) that replace their targets. */
  install: ManagedFile[];
  daemonReload: boolean;
  restart: boolean;
  port: number;
  /** How long to wait for the agent to listen, in tenths of a second. */
  waitTenths?: number;
}

/**
 * Unpacks the upload (a tar on stdin) and moves each file into place, keeping what it
 * replaces in $D/.rollback until the controller commits; fixes owners and modes of every
 * managed file; enables and (re)starts the unit; waits until the agent listens.
 */
export function applyScript(l: RemoteLayout, a: ApplyInputs): string {
  return script(
    {
      ...common(l),
      PORT_HEX: portHex(a.port),
      INSTALL: a.install.map((f) => `${f.name} ${f.path} ${f.mode.toString(8)}`).join('\n'),
      MODES: managedFiles(l).map((f) => `${f.path} ${f.mode.toString(8)}`).join('\n'),
      RELOAD: a.daemonReload ? 'yes' : 'no',
      RESTART: a.restart ? 'yes' : 'no',
      WAIT: String(a.waitTenths ?? 200),
    },
    `set -eu
${LISTENERS}
umask 022
mkdir -p "$D" "$D/tls" "$D/state" "$UNIT_DIR"
chown 0:0 "$D" "$D/tls" "$D/state"
chmod 0755 "$D"
chmod 0700 "$D/tls" "$D/state"
rm -rf "$D/.staging" "$D/.rollback"
mkdir -m 0700 "$D/.staging" "$D/.rollback"
tar -x -f - -C "$D/.staging" --no-same-owner
echo "$INSTALL" | while read -r name target mode; do
  [ -n "$name" ] || continue
  if [ -e "$target" ]; then mv -f "$target" "$D/.rollback/$name"; fi
  chown 0:0 "$D/.staging/$name"
  chmod "$mode" "$D/.staging/$name"
  mv -f "$D/.staging/$name" "$target"
done
rmdir "$D/.staging"
echo "$MODES" | while read -r target mode; do
  if [ -e "$target" ]; then chown 0:0 "$target"; chmod "$mode" "$target"; fi
done
if [ "$RELOAD" = yes ]; then systemctl daemon-reload >&2; fi
systemctl enable "$UNIT" >&2
fail_start() {
  say state "$(systemctl is-active "$UNIT" 2>/dev/null)"
  journalctl -u "$UNIT" -n 12 --no-pager -o cat 2>/dev/null | sed 's/^/log=/'
  exit ${EXIT_NOT_LISTENING}
}
if [ "$RESTART" = yes ]; then
  systemctl stop "$UNIT" >/dev/null 2>&1 || true
  systemctl start "$UNIT" >&2 || fail_start
fi
i=0
while :; do
  if [ -n "$(listeners)" ]; then say listening yes; exit 0; fi
  state=$(systemctl is-active "$UNIT" 2>/dev/null || true)
  if [ "$state" = failed ] || [ $i -ge "$WAIT" ]; then fail_start; fi
  i=$((i + 1))
  sleep 0.1
done`,
  );
}

/** Drops what the apply kept for a rollback: the install is final. */
export function commitScript(l: RemoteLayout): string {
  return script(common(l), 'rm -rf "$D/.rollback" "$D/.staging"\nexit 0');
}

export interface RollbackInputs {
  /** Files the apply step was to write, and whether each existed before (its previous
   * version then waits in .rollback, unless the apply stopped before it got there). */
  written: { file: ManagedFile; existed: boolean }[];
  wasActive: boolean;
  wasEnabled: boolean;
  /** Directories this run created, deepest last. */
  createdDirs: string[];
  /** Packages apt-get added in this run, to purge. */
  addedPackages: string[];
  /** The marker file as it was before this run ('' when there was none). */
  markerBefore: string;
}

/** Puts the host back as it was before this run of install-agent, as far as it touched it. */
export function rollbackScript(l: RemoteLayout, r: RollbackInputs): string {
  return script(
    {
      ...common(l),
      WRITTEN: r.written.map((w) => `${w.file.name} ${w.file.path} ${w.existed ? 'yes' : 'no'}`).join('\n'),
      WAS_ACTIVE: r.wasActive ? 'yes' : 'no',
      WAS_ENABLED: r.wasEnabled ? 'yes' : 'no',
      CREATED: [...r.createdDirs].reverse().join('\n'),
      ADDED: r.addedPackages.join(' '),
      MARKER_BEFORE: r.markerBefore,
    },
    `set -u
export DEBIAN_FRONTEND=noninteractive
if [ "$WAS_ACTIVE" != yes ]; then systemctl stop "$UNIT" >/dev/null 2>&1; fi
if [ "$WAS_ENABLED" != yes ] && [ -f "$UNIT_FILE" ]; then systemctl disable "$UNIT" >/dev/null 2>&1; fi
echo "$WRITTEN" | while read -r name target existed; do
  [ -n "$name" ] || continue
  if [ -e "$D/.rollback/$name" ]; then mv -f "$D/.rollback/$name" "$target"
  elif [ "$existed" = no ]; then rm -f "$target"; fi
done
rm -rf "$D/.staging" "$D/.rollback"
if command -v systemctl >/dev/null 2>&1; then
  systemctl daemon-reload >/dev/null 2>&1
  systemctl reset-failed "$UNIT" >/dev/null 2>&1
fi
if [ "$WAS_ACTIVE" = yes ]; then
  systemctl stop "$UNIT" >/dev/null 2>&1
  systemctl start "$UNIT" >&2 || say warning "the agent that ran before could not be started again"
fi
if [ -n "$ADDED" ]; then
  apt-get -q -y -o DPkg::Lock::Timeout=300 purge $ADDED >&2 || say warning "apt-get purge $ADDED failed"
  if [ -n "$MARKER_BEFORE" ]; then printf '%s\\n' "$MARKER_BEFORE" >"$MARKER"; else rm -f "$MARKER"; fi
fi
echo "$CREATED" | while read -r dir; do
  [ -n "$dir" ] && rm -rf "$dir"
done
exit 0`,
  );
}

/**
 * Stops, disables and removes the unit, purges the packages install-agent installed
 * (only when that removes nothing else), and removes /opt/cmmigrate.
 */
export function uninstallScript(l: RemoteLayout, opts: { keepPackages: boolean }): string {
  return script(
    { ...common(l), KEEP: opts.keepPackages ? 'yes' : 'no' },
    `set -u
export DEBIAN_FRONTEND=noninteractive
if [ -f "$UNIT_FILE" ]; then
  say had_unit yes
  systemctl stop "$UNIT" >&2
  if [ "$(systemctl is-active "$UNIT" 2>/dev/null)" = active ]; then say fail uninstall.stop_failed; exit ${EXIT_KNOWN_FAILURE}; fi
  systemctl disable "$UNIT" >&2
  rm -f "$UNIT_FILE"
  systemctl daemon-reload >&2
  systemctl reset-failed "$UNIT" >/dev/null 2>&1
fi
# A link left by \`systemctl enable\` whose unit file was removed by hand.
for link in "$UNIT_DIR"/*.wants/"$UNIT"; do
  if [ -L "$link" ]; then rm -f "$link"; fi
done
if [ -f "$MARKER" ]; then
  packages=$(tr '\\n' ' ' <"$MARKER")
  if [ "$KEEP" = yes ]; then
    say kept_packages "$packages"
  else
    others=$(apt-get -s purge $packages 2>/dev/null | awk '$1 == "Purg" || $1 == "Remv" { print $2 }' | grep -vxF -f "$MARKER" | tr '\\n' ' ')
    if [ -n "$others" ]; then
      say kept_packages "$packages"
      say kept_because "$others"
    elif apt-get -q -y -o DPkg::Lock::Timeout=300 purge $packages >&2; then
      say removed_packages "$packages"
    else
      say fail apt.purge_failed
      exit ${EXIT_KNOWN_FAILURE}
    fi
  fi
fi
if [ -d "$D" ]; then rm -rf "$D"; say removed_dir "$D"; fi
exit 0`,
  );
}
