#!/usr/bin/env bash
# Runs mbd through the steps of the APT repository benchmark, on a corpus directory laid out
# like the anchor scripts' corpora (debs/ or dscs/ with the packages, extra/ with the one
# package of the add-one step), and prints one line per step in the anchors' format:
#
#   mbd <corpus name> <step> <wall seconds> <max RSS MB>
#
#   benches/compare.sh CORPUS_DIR            # e.g. /tmp/benchdata/corpora/synthetic-10000
#
# Steps (distributions bookworm-test-unstable and -testing, architectures amd64 i386,
# component main, indices .gz and .xz, signed):
#   add-all     include every package of the corpus in one command (publishes unstable)
#   export      full re-publish of unstable with an empty compression cache (cold)
#   add-one     include extra/<package> (publishes unstable)
#   copy-one    migrate one source unstable -> testing (publishes testing)
#   remove-one  remove one source from unstable (publishes unstable and its rollback)
# then an untimed `apt-get update` check against the result.
# Needs: /usr/bin/time (Debian package `time`), apt; builds mbd with cargo if MBD is unset.
set -euo pipefail
CORPUS=$(cd "${1:?usage: benches/compare.sh CORPUS_DIR}" && pwd)
NAME=$(basename "$CORPUS")
HERE=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${MBD:-}" ]; then
    cargo build --release --quiet --manifest-path "$HERE/Cargo.toml"
    MBD=$HERE/target/release/mbd
fi
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
H=$W/home
U=bookworm-test-unstable
T=bookworm-test-testing
LOG=$W/log

measure() { # STEP CMD...
    local step=$1; shift
    local t0 t1
    t0=$(date +%s%N)
    if ! /usr/bin/time -f '%M' -o "$W/rss" "$@" >> "$LOG" 2>&1; then
        echo "mbd $NAME $step FAILED (see below)" >&2
        tail -20 "$LOG" >&2
        exit 1
    fi
    t1=$(date +%s%N)
    awk -v n="$NAME" -v s="$step" -v a="$t0" -v b="$t1" -v k="$(tail -1 "$W/rss")" \
        'BEGIN { printf "mbd %s %s %.3f %.1f\n", n, s, (b - a) / 1e9, k / 1024 }'
}

if [ -d "$CORPUS/dscs" ]; then
    FILES=$CORPUS/dscs
    first_source() { sed -n 's/^Source: //p' "$(find "$FILES" -name '*.dsc' | sort | sed -n "${1}p")"; }
else
    FILES=$CORPUS/debs
    first_source() {
        local deb src
        deb=$(find "$FILES" -name '*.deb' | sort | sed -n "${1}p")
        src=$(dpkg-deb -f "$deb" Source | cut -d' ' -f1)
        [ -n "$src" ] || src=$(dpkg-deb -f "$deb" Package)
        echo "$src"
    }
fi
COPY=$(first_source 3)
REMOVE=$(first_source 25)

"$MBD" --home "$H" setup --identity bench --distributions bookworm:amd64+i386 \
    --repositories test:Default:bookworm >> "$LOG" 2>&1
measure add-all "$MBD" --home "$H" repo include $U "$FILES"
measure export "$MBD" --home "$H" repo publish --cold $U
measure add-one "$MBD" --home "$H" repo include $U "$CORPUS"/extra/
measure copy-one "$MBD" --home "$H" repo migrate "$COPY" $U
measure remove-one "$MBD" --home "$H" repo remove "$REMOVE" $U

# Untimed: does apt accept the result?
"$MBD" --home "$H" pub-key --binary > "$W/key.pgp"
R=$W/apt
mkdir -p "$R"/etc/apt/{apt.conf.d,preferences.d,sources.list.d,trusted.gpg.d} "$R"/var/lib/apt/lists/partial \
    "$R"/var/cache/apt/archives/partial "$R"/var/lib/dpkg
touch "$R/var/lib/dpkg/status" "$R/etc/apt/sources.list"
echo "deb [signed-by=$W/key.pgp] file:$H/repositories/test $U main" > "$R/etc/apt/sources.list.d/mbd.list"
cat > "$W/apt.conf" <<EOF
Dir "$R/"; Dir::State "$R/var/lib/apt/"; Dir::State::status "$R/var/lib/dpkg/status";
Dir::Cache "$R/var/cache/apt/"; Dir::Etc "$R/etc/apt/"; APT::Architecture "amd64";
APT::Architectures { "amd64"; "i386"; }; Acquire::Languages "none"; Debug::NoLocking "true";
APT::Sandbox::User "root";
EOF
if APT_CONFIG=$W/apt.conf apt-get --error-on=any update >> "$LOG" 2>&1; then
    n=$(APT_CONFIG=$W/apt.conf apt-cache dumpavail | grep -c '^Package: ' || true)
    echo "# verify mbd $NAME apt-get-update rc=0 packages=$n"
else
    echo "# verify mbd $NAME apt-get-update FAILED" >&2
    tail -20 "$LOG" >&2
    exit 1
fi
du -sb "$H/repositories/test/dists" "$H/repositories/test/pool" "$H/mbd.redb" | awk -v n="$NAME" '{ printf "# size mbd %s %s %d\n", n, $2, $1 }'
