#!/usr/bin/env bash
# The Debian package as a user meets it, in a fresh Debian root made by mmdebstrap (root
# needed):
#  1. `apt install ./mbd_<old>.deb` (a previous version: the same build, its version lowered)
#     resolving the dependencies from Debian; `systemd-analyze verify` on the unit;
#  2. the daemon started exactly as the unit starts it (systemd cannot be PID 1 in a
#     chroot: the unit's ExecStart line, as its User, with /etc/default/mbd), a package
#     included, `apt-get update` and `apt-get install` of it from outside (an isolated apt);
#  3. the new package installed over it: the repository is unchanged and served;
#  4. `apt remove mbd` keeps the home and its repositories; `apt purge mbd` then leaves no
#     file of mbd.
#
#   scripts/package-test.sh [SUITE]      (bookworm by default; builds the package if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE=${1:-bookworm}
ARCH=$(dpkg --print-architecture)
[ -n "$(ls target/debian/mbd_*_"$ARCH".deb 2>/dev/null)" ] || scripts/package.sh
DEB=$(ls target/debian/mbd_*_"$ARCH".deb | tail -1)
W=$(mktemp -d)
R=$W/root
PORT=18066
cleanup() {
    pkill -f "mbd --home /var/lib/mbd daemon" 2>/dev/null || true
    sleep 0.5
    umount "$R/proc" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
step() { echo "package-test: $*"; }
in_root() { chroot "$R" env DEBIAN_FRONTEND=noninteractive "$@"; }

step "a fresh $SUITE root"
mmdebstrap --quiet --variant=apt --include=ca-certificates,systemd "$SUITE" "$R" >"$W/mmdebstrap.log" 2>&1 \
    || { cat "$W/mmdebstrap.log"; exit 1; }
mount -t proc proc "$R/proc"
in_root apt-get update -qq

step "a previous version"
dpkg-deb -R "$DEB" "$W/old"
sed -i 's/^Version: .*/Version: 0.0.1/' "$W/old/DEBIAN/control"
dpkg-deb --root-owner-group -b "$W/old" "$R/tmp/mbd_0.0.1_$ARCH.deb" >/dev/null
cp "$DEB" "$R/tmp/mbd_new.deb"
in_root apt-get install -y -q "/tmp/mbd_0.0.1_$ARCH.deb" >"$W/install.log" 2>&1 || { cat "$W/install.log"; exit 1; }
# The root's own systemd checks the unit (its version knows its units' keys).
chroot "$R" systemd-analyze verify /lib/systemd/system/mbd.service

start() {
    # The unit's command line, as its user, with its environment file.
    exec_start=$(sed -n 's/^ExecStart=//p' "$R/lib/systemd/system/mbd.service")
    user=$(sed -n 's/^User=//p' "$R/lib/systemd/system/mbd.service")
    chroot "$R" runuser -u "$user" -- sh -c ". /etc/default/mbd; exec $exec_start" >>"$W/daemon.log" 2>&1 &
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return 0
        sleep 0.2
    done
    cat "$W/daemon.log"
    echo "package-test: the daemon did not start" >&2
    exit 1
}
stop() {
    pkill -f "mbd --home /var/lib/mbd daemon"
    for _ in $(seq 50); do pgrep -f "mbd --home /var/lib/mbd daemon" >/dev/null || return 0; sleep 0.2; done
}

step "the daemon as the unit starts it"
echo "MBD_OPTIONS=\"--http-endpoint 127.0.0.1:$PORT --ftp-endpoint none --no-default-chroot\"" \
    >"$R/etc/default/mbd"
start
[ "$(stat -c %a "$R/var/lib/mbd/etc/admin-password")" = 600 ]
grep -q "password is in /var/lib/mbd/etc/admin-password" "$W/daemon.log"
mkdir -p "$R/tmp/pkg"
cp -r fixtures/pkg/. "$R/tmp/pkg/"
api() { chroot "$R" runuser -u mbd -- /usr/bin/mbd --home /var/lib/mbd api "$@"; }
# The embedded default is a repository for the root's own codename.
api include "$SUITE-test-unstable" "/tmp/pkg/mbd-hello_1.0-1~test12+1_amd64.changes" >/dev/null
before=$(api ls mbd-hello)

outside_apt() {
    local A=$W/apt
    rm -rf "$A"
    mkdir -p "$A"/etc/apt/{apt.conf.d,preferences.d,sources.list.d} "$A"/var/lib/apt/lists/partial \
        "$A"/var/cache/apt/archives/partial "$A"/var/lib/dpkg/{info,updates} "$A"/var/log/apt
    touch "$A/var/lib/dpkg/status"
    curl -sf "http://127.0.0.1:$PORT/api/sources_list?format=sources&signed_by=inline&output=plain" \
        >"$A/etc/apt/sources.list.d/mbd.sources"
    cat >"$A/apt.conf" <<CONF
Dir "$A/"; Dir::State "$A/var/lib/apt/"; Dir::State::status "$A/var/lib/dpkg/status";
Dir::Cache "$A/var/cache/apt/"; Dir::Etc "$A/etc/apt/"; APT::Architecture "$ARCH";
Acquire::Languages "none"; Debug::NoLocking "true"; APT::Sandbox::User "root";
Dir::Log "$A/var/log/apt/"; DPkg::Use-Pty "0";
DPkg::Options { "--root=$A"; "--admindir=$A/var/lib/dpkg"; "--force-script-chrootless"; "--force-not-root"; };
CONF
    APT_CONFIG=$A/apt.conf apt-get -q update --error-on=any >"$W/apt.log" 2>&1 || { cat "$W/apt.log"; exit 1; }
    APT_CONFIG=$A/apt.conf apt-get -q -y install mbd-hello >>"$W/apt.log" 2>&1 \
        || { cat "$W/apt.log"; exit 1; }
    [ -x "$A/usr/bin/mbd-hello" ] \
        || { cat "$W/apt.log"; echo "package-test: mbd-hello not installed" >&2; exit 1; }
}
outside_apt

step "the new version over it"
stop
in_root apt-get install -y -q /tmp/mbd_new.deb >"$W/upgrade.log" 2>&1 || { cat "$W/upgrade.log"; exit 1; }
start
after=$(api ls mbd-hello)
[ "$before" = "$after" ] || { echo "package-test: the repository changed: $before / $after" >&2; exit 1; }
outside_apt

step "remove"
stop
in_root apt-get remove -y -q mbd >"$W/remove.log" 2>&1 || { cat "$W/remove.log"; exit 1; }
[ -d "$R/var/lib/mbd/repositories/test/pool" ] || { echo "package-test: remove took the home" >&2; exit 1; }
[ ! -e "$R/usr/bin/mbd" ] && [ ! -e "$R/etc/sudoers.d/mbd" ] \
    || { echo "package-test: remove left the binary or the sudo rule" >&2; exit 1; }

step "purge"
in_root apt-get purge -y -q mbd >"$W/purge.log" 2>&1 || { cat "$W/purge.log"; exit 1; }
rm -rf "$R"/tmp/mbd* "$R/tmp/pkg"
left=$(find "$R" -path "$R/proc" -prune -o \( -name '*mbd*' -o -path "$R/var/lib/mbd" \) -print | grep -v '^'"$R"'/proc$' || true)
[ -z "$left" ] || { echo "package-test: left after purge:"; echo "$left"; exit 1; }
if chroot "$R" id mbd >/dev/null 2>&1; then echo "package-test: user mbd left" >&2; exit 1; fi
step "ok: installed, verified, served, upgraded, removed, purged ($SUITE)"
