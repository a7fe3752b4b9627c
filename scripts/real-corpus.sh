#!/usr/bin/env bash
# The real-package corpus: Debian source packages from the Debian mirror, uploaded to a real
# daemon as a Debian developer uploads them, built in the chroots the daemon makes, installed
# with trixie's apt. The packages and what each must end as are in scripts/real-corpus.list.
#
#   scripts/real-corpus.sh [--ci] [SOURCE...]
#
# --ci: only the packages the list marks `ci` (CI runs these every time). Needs root (sbuild,
# schroot, the chroot for the release roots) and the mirror; installs nothing itself
# (scripts/deps.sh does). Downloads are kept under target/corpus/cache/.
#
# For each package:
#   1. dget the .dsc and its files; dpkg-source -x;
#   2. re-version it as a user would: dch -b --newversion VERSION~test13+1 (the Default layout's
#      appendix for trixie's unstable suite), plus the list's edit, if any (scripts/real-corpus.edits);
#   3. non-native only: dpkg-buildpackage -S -sd (the orig tarball left out), debsign, dput:
#      the upload must be REJECTED naming the orig tarball (the pool has none yet);
#   4. dpkg-buildpackage -S -sa (with it), debsign, dput: the decision must be the list's;
#   5. every package the source built for amd64 or all is installed with apt in a fresh
#      minimal trixie root (sqv verifying our signatures).
# The results (package, shape, outcome, accepted→installed time, sbuild time per
# architecture) go to target/corpus/results.md; the exit status is 0 only when every package
# ended as the list says.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CI_ONLY=0
if [ "${1:-}" = --ci ]; then CI_ONLY=1; shift; fi
ONLY=("$@")
export LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive
MIRROR=${MBD_CORPUS_MIRROR:-http://deb.debian.org/debian}
PORT=${MBD_CORPUS_PORT:-18077}
CODENAME=trixie
DIST=$CODENAME-test-unstable
APPENDIX="~test13+1"
LIMIT=${MBD_CORPUS_LIMIT:-1800} # seconds per decision
CACHE=$REPO/target/corpus/cache
OUT=$REPO/target/corpus
RUN=$(mktemp -d /tmp/mbd-corpus.XXXXXX)
HOME_DIR=$RUN/home
mkdir -p "$CACHE" "$RUN/work"
log() { printf '[corpus %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

cargo build --quiet
MBD=$REPO/target/debug/mbd
api() { "$MBD" api --home "$HOME_DIR" "$@"; }

DAEMON_PID=""
stop() {
    [ -z "${GNUPGHOME:-}" ] || gpgconf --kill gpg-agent 2>/dev/null || true
    [ -z "$DAEMON_PID" ] || kill "$DAEMON_PID" 2>/dev/null || true
    [ -z "$DAEMON_PID" ] || wait "$DAEMON_PID" 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then log "kept $RUN"; else rm -rf "$RUN"; fi
}
trap stop EXIT

# --- The packages ------------------------------------------------------------------------
# Fields: see the list's header.
declare -a PACKAGES=()
while read -r src ver upver expect ci why; do
    case "$src" in '#'* | '') continue ;; esac
    if [ ${#ONLY[@]} -gt 0 ] && [[ ! " ${ONLY[*]} " == *" $src "* ]]; then continue; fi
    if [ "$CI_ONLY" = 1 ] && [ "$ci" != ci ]; then continue; fi
    [ "$upver" != = ] || upver=$ver$APPENDIX
    PACKAGES+=("$src|$ver|$upver|$expect|$why")
done < scripts/real-corpus.list
[ ${#PACKAGES[@]} -gt 0 ] || die "no package selected"
ARCHES=amd64
for p in "${PACKAGES[@]}"; do
    case "$p" in *"failed:i386|"*) ARCHES=amd64+i386 ;; esac
done

# --- The daemon ----------------------------------------------------------------------------
log "home $HOME_DIR, port $PORT, architectures $ARCHES, ${#PACKAGES[@]} packages"
"$MBD" --home "$HOME_DIR" daemon --no-default-setup --http-endpoint "127.0.0.1:$PORT" \
    --ftp-endpoint none > "$RUN/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do api status > /dev/null 2>&1 && break; sleep 0.2; done
api status > /dev/null || die "the daemon did not start: $(tail "$RUN/daemon.log")"
api setup --preset Debian --archives-from-apt-sources --sources "$CODENAME" \
    --distributions "$CODENAME:$ARCHES" > "$RUN/setup.txt" || die "setup: $(cat "$RUN/setup.txt")"
if [ "$ARCHES" != amd64 ]; then
    api distribution_set "$CODENAME" optional_architectures --value i386 > /dev/null
fi
# Signed uploads only, by a staff user's uploader key.
GNUPGHOME=$RUN/gnupg
export GNUPGHOME
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --import fixtures/keys/uploader.sec.asc
KEY=$(gpg --batch --with-colons --list-secret-keys | awk -F: '/^fpr/ {print $10; exit}')
UPLOADER=$(gpg --batch --with-colons --list-secret-keys | awk -F: '/^uid/ {print $10; exit}')
api set_repository test > /dev/null
api user_add dev --level staff --password dev-pw > /dev/null
MBD_USER=dev MBD_PASSWORD=dev-pw api set_user_key "$(cat fixtures/keys/uploader.asc)" > /dev/null
api uploader_activate dev > /dev/null
api dput_conf > "$RUN/dput.cf"
SECTION=$(head -1 "$RUN/dput.cf" | tr -d '[]')

wait_chroots() {
    local started=$SECONDS
    while :; do
        local states
        states=$(api chroots --json | python3 -c 'import json,sys; print(" ".join(c["codename"]+"-"+c["architecture"]+":"+c["state"] for c in json.load(sys.stdin)))')
        case "$states" in
            *failed*) die "a chroot failed: $states" ;;
            *preparing* | *new* | '') ;;
            *) log "chroots ready after $((SECONDS - started)) s: $states"; return ;;
        esac
        [ $((SECONDS - started)) -lt 1800 ] || die "chroots not ready: $states"
        sleep 2
    done
}
wait_chroots

# --- One package ---------------------------------------------------------------------------
pool_dir() { # SOURCE
    case "$1" in lib?*) echo "${1:0:4}/$1" ;; *) echo "${1:0:1}/$1" ;; esac
}

fetch() { # SOURCE VERSION -> the cached .dsc
    local src=$1 ver=$2 dir="$CACHE/$1_$2"
    local dsc="$dir/${src}_${ver#*:}.dsc"
    if [ ! -f "$dir/.complete" ]; then
        rm -rf "$dir" && mkdir -p "$dir"
        (cd "$dir" && dget --quiet -d -u "$MIRROR/pool/main/$(pool_dir "$src")/${src}_${ver#*:}.dsc" >&2) \
            || die "dget $src $ver"
        touch "$dir/.complete"
    fi
    echo "$dsc"
}

# Waits for the first event of SOURCE at VERSION among KINDS after the first AFTER events of
# SOURCE; prints it as "KIND<tab>json".
wait_decision() { # SOURCE VERSION AFTER KINDS...
    local src=$1 ver=$2 after=$3 started=$SECONDS
    shift 3
    while :; do
        local d
        d=$(api events --source "$src" --json | python3 -c '
import json, sys
ver, after, kinds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for e in json.load(sys.stdin)[after:]:
    if e["version"] == ver and e["kind"] in kinds:
        print(e["kind"] + "\t" + json.dumps(e)); break
' "$ver" "$after" "$@")
        if [ -n "$d" ]; then echo "$d"; return; fi
        [ $((SECONDS - started)) -lt "$LIMIT" ] || die "$src $ver: no decision within $LIMIT s"
        sleep 1
    done
}

# Waits until SOURCE at VERSION is decided as a whole: REJECTED (an event after the first
# AFTER), or its upload record installed, failed or cancelled (a build's own FAILED event is
# not the upload's end: an optional architecture may fail alone). Prints the kind.
wait_final() { # SOURCE VERSION AFTER
    local src=$1 ver=$2 after=$3 started=$SECONDS
    while :; do
        local d
        d=$(wait_decision "$src" "$ver" "$after" REJECTED ACCEPTED)
        if [[ "$d" == REJECTED* ]]; then echo REJECTED; return; fi
        d=$(api builds --source "$src" --json | python3 -c '
import json, sys
ver = sys.argv[1]
for u in json.load(sys.stdin):
    if u["version"] == ver and u["state"] != "building":
        print(u["state"].upper()); break
' "$ver")
        if [ -n "$d" ]; then echo "$d"; return; fi
        [ $((SECONDS - started)) -lt "$LIMIT" ] || die "$src $ver: not decided within $LIMIT s"
        sleep 1
    done
}

event_count() { # SOURCE
    api events --source "$1" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'
}

upload() { # DIR CHANGES
    debsign --no-conf -k"$KEY" "$2" > /dev/null 2>&1 || die "debsign $2"
    # -f: the same .changes goes again after its rejection, as a user sends it again.
    dput -f -u -c "$RUN/dput.cf" "$SECTION" "$2" > "$RUN/dput.log" 2>&1 || die "dput $2: $(cat "$RUN/dput.log")"
}

RESULTS=$RUN/results.tsv
FAILURES=0
one() { # SOURCE|VERSION|UPLOAD_VERSION|EXPECT|WHY
    local src ver newver expect why
    IFS='|' read -r src ver newver expect why <<< "$1"
    log "$src $newver: expect $expect ($why)"
    local dsc work="$RUN/work/$src"
    dsc=$(fetch "$src" "$ver")
    [ -f "$dsc" ] || die "$src $ver: no .dsc"
    rm -rf "$work" && mkdir -p "$work"
    dpkg-source --no-check -x "$dsc" "$work/tree" > /dev/null
    (
        cd "$work/tree"
        DEBFULLNAME=${UPLOADER% <*}
        DEBEMAIL=$(sed 's/.*<\(.*\)>.*/\1/' <<< "$UPLOADER")
        export DEBFULLNAME DEBEMAIL
        dch --force-bad-version --newversion "$newver" --distribution "$DIST" --force-distribution \
            "Rebuilt for mbd's real-package corpus." 2> /dev/null
        if [ -f "$REPO/scripts/real-corpus.edits/$src" ]; then
            MBD_CORPUS_APPENDIX=$APPENDIX bash "$REPO/scripts/real-corpus.edits/$src"
        fi
    )
    local native=0
    grep -q '^Format: 3.0 (native)' "$dsc" && native=1
    grep -q '^Format: 1.0' "$dsc" && ! grep -qE '\.(diff|debian\.tar)\.' "$dsc" && native=1
    local changes="$work/${src}_${newver#*:}_source.changes" row_orig="-"
    local events orig=-sa
    if [ "$expect" = next-revision ]; then
        # A later revision, as dpkg-buildpackage -S makes it: without the orig tarball.
        orig=-sd expect=installed row_orig="left out: built from the pool's copy"
    elif [ "$native" = 0 ]; then
        (cd "$work/tree" && dpkg-buildpackage -S -d -nc -us -uc -sd > "$work/source.log" 2>&1) \
            || die "$src: dpkg-buildpackage -S -sd: $(tail "$work/source.log")"
        events=$(event_count "$src")
        upload "$work" "$changes"
        local d
        d=$(wait_decision "$src" "$newver" "$events" REJECTED ACCEPTED)
        if [[ "$d" == REJECTED* ]] && grep -q -- '-sa' <<< "$d" && grep -q 'orig' <<< "$d"; then
            row_orig="REJECTED (names the orig, says -sa)"
        else
            row_orig="UNEXPECTED: ${d:0:300}"
            FAILURES=$((FAILURES + 1))
        fi
        log "$src without the orig tarball: $row_orig"
    fi
    (cd "$work/tree" && dpkg-buildpackage -S -d -nc -us -uc "$orig" > "$work/source.log" 2>&1) \
        || die "$src: dpkg-buildpackage -S $orig: $(tail "$work/source.log")"
    events=$(event_count "$src")
    upload "$work" "$changes"
    local kind
    kind=$(wait_final "$src" "$newver" "$events")
    local got
    got=$(outcome "$src" "$newver" "$kind")
    local times
    times=$(timings "$src" "$newver")
    local installed="-" published
    if [ "$kind" = INSTALLED ]; then installed=$(install "$src" "$newver"); fi
    published=$(published "$src" "$newver")
    local ok=yes
    if [ "$got" != "$expect" ] || [[ "$installed" == FAILED* ]]; then
        ok=NO
        FAILURES=$((FAILURES + 1))
        log "$src: expected $expect, got $got; $(api events --source "$src" | tail -3)"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$src" "$newver" "$why" "$row_orig" "$got" \
        "$times" "$published" "$installed" "$ok" >> "$RESULTS"
    log "$src: $got, $times, apt: $installed"
}

# The binary packages of SOURCE at VERSION in the pool: "name_arch.type" words.
published() { # SOURCE VERSION
    local v=${2#*:}
    find "$HOME_DIR"/repositories/*/pool -path "*/$1/*" -name "*_${v}_*.*deb" -printf '%f\n' \
        | sed -E "s/_${v//+/\\+}_/_/" | sort | tr '\n' ' '
}

# installed, or failed:ARCH[,ARCH] (the architectures whose build failed), or the kind.
outcome() { # SOURCE VERSION KIND
    local failed
    failed=$(api builds --source "$1" --json | python3 -c '
import json, sys
ver = sys.argv[1]
for u in json.load(sys.stdin):
    if u["version"] == ver:
        print(",".join(sorted(a for a, b in u["builds"].items() if b["state"] != "built"))); break
' "$2")
    case "$3" in
        INSTALLED) if [ -n "$failed" ]; then echo "installed,failed:$failed"; else echo installed; fi ;;
        FAILED) echo "failed:${failed:-?}" ;;
        *) echo "$3" ;;
    esac
}

# "T s; sbuild amd64 T s, i386 T s; mbd T s": accepted→decided from the events' ids
# (nanoseconds), each build's sbuild run from its record (started, finished: seconds), and
# the rest, mbd's own time (acceptance, planning, installing, publishing).
timings() { # SOURCE VERSION
    local builds
    builds=$(api builds --source "$1" --json)
    api events --source "$1" --json | python3 -c '
import json, sys
ver, builds = sys.argv[1], json.loads(sys.argv[2])
evs = [e for e in json.load(sys.stdin) if e["version"] == ver]
def at(e): return int(e["id"]) / 1e9
acc = [at(e) for e in evs if e["kind"] == "ACCEPTED"]
end = [at(e) for e in evs if e["kind"] in ("INSTALLED", "FAILED")]
parts, sbuild = [], 0
for u in builds:
    if u["version"] == ver:
        for arch, b in sorted(u["builds"].items()):
            if b["finished"]:
                parts.append("%s %d s" % (arch, b["finished"] - b["started"]))
                sbuild += b["finished"] - b["started"]
        break
if acc and end:
    total = end[-1] - acc[-1]
    # Builds run one after the other (one build slot); whole seconds.
    print("%.1f s; sbuild %s; mbd %.0f s" % (total, ", ".join(parts) or "-", max(total - sbuild, 0)))
else:
    print("?; sbuild %s" % (", ".join(parts) or "-"))
' "$2" "$builds"
}

ROOT_TEMPLATE=$REPO/target/release-roots/$CODENAME
# Installs every amd64/all package SOURCE built, in a copy of a minimal trixie root.
install() { # SOURCE VERSION
    if [ ! -d "$ROOT_TEMPLATE" ]; then
        mkdir -p "$(dirname "$ROOT_TEMPLATE")"
        mmdebstrap --quiet --variant=apt "$CODENAME" "$ROOT_TEMPLATE.tmp" "$MIRROR" >&2 \
            && mv "$ROOT_TEMPLATE.tmp" "$ROOT_TEMPLATE"
    fi
    local root="$RUN/root"
    rm -rf "$root" && cp -a "$ROOT_TEMPLATE" "$root"
    api sources_list --codenames "$CODENAME" --format sources --signed-by inline \
        > "$root/etc/apt/sources.list.d/mbd.sources"
    # Dependencies from Debian: the mirror, verified with the root's own Debian keyring.
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$MIRROR" "$CODENAME" > "$root/etc/apt/sources.list.d/debian.sources"
    if ! chroot "$root" apt-get --error-on=any update > "$RUN/apt.log" 2>&1; then
        echo "FAILED apt update: $(tail -3 "$RUN/apt.log" | tr '\n' ' ')"
        return
    fi
    local pkgs
    pkgs=$(cat "$root"/var/lib/apt/lists/*"_${DIST}_"*binary-amd64_Packages 2> /dev/null | python3 -c '
import sys
src, ver = sys.argv[1], sys.argv[2]
for stanza in sys.stdin.read().split("\n\n"):
    f = dict(l.split(": ", 1) for l in stanza.splitlines() if ": " in l and not l.startswith(" "))
    s = f.get("Source", f.get("Package", "")).split(" ")[0]
    if s == src and f.get("Version") == ver or s == src and "(" + ver + ")" in f.get("Source", ""):
        if not f["Package"].endswith("-dbgsym"): print(f["Package"])
' "$1" "$2" | sort -u | tr '\n' ' ')
    [ -n "$pkgs" ] || { echo "FAILED: no package of $1 in the index"; return; }
    if chroot "$root" apt-get -o Dpkg::Use-Pty=0 install -y $pkgs > "$RUN/apt.log" 2>&1; then
        echo "apt installed: $pkgs"
    else
        echo "FAILED apt install $pkgs: $(grep -E '^E:' "$RUN/apt.log" | head -3 | tr '\n' ' ')"
    fi
}

for p in "${PACKAGES[@]}"; do one "$p"; done

# --- The table ---------------------------------------------------------------------------------
mkdir -p "$OUT"
{
    echo "| package | shape | without orig | outcome | accepted→decided; sbuild per arch; mbd | published | apt | as listed |"
    echo "|---|---|---|---|---|---|---|---|"
    while IFS=$'\t' read -r src ver why orig got times published installed ok; do
        echo "| $src $ver | $why | $orig | $got | $times | $published | ${installed#apt installed: } | $ok |"
    done < "$RESULTS"
} > "$OUT/results.md"
cat "$OUT/results.md"
[ "$FAILURES" = 0 ] || die "$FAILURES package(s) did not end as listed"
log "every package ended as listed"
