#!/usr/bin/env bash
# Serving benchmark: one published tree, served by the mbd daemon and by nginx side by side in
# one run, measured with wrk (HTTP/1.1 keep-alive) and with a real apt client.
#
#   benches/serve.sh GEN_SYNTHETIC_PY [PACKAGES] [SECONDS]
#     e.g. benches/serve.sh ../shared/bench/gen-synthetic.py 2000 10
#
# Prints, for InRelease, a small pool file, Packages.xz and a 50 MB pool file, at 1 and 64
# connections:
#
#   serve <server> <file> c=<connections> <req/s> p50=<ms> p99=<ms>
#
# then the ratios mbd/nginx, and one real-client figure: `apt-get install --download-only`
# of 200 small packages into an isolated apt root from each server (wall seconds, best of 3).
# Needs: wrk, nginx (nginx-light), apt, dpkg-deb, python3; builds mbd unless MBD is set.
set -euo pipefail
GEN=$(realpath "${1:?usage: benches/serve.sh GEN_SYNTHETIC_PY [PACKAGES] [SECONDS]}")
N=${2:-2000}
SECS=${3:-10}
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"
H=$W/home
LOG=$W/log
U=bookworm-test-unstable


# The tree: N synthetic packages and one 50 MB package, published by mbd.
python3 "$GEN" "$N" "$W/corpus" --jobs "$(nproc)" >> "$LOG" 2>&1
mkdir -p "$W/big/DEBIAN" "$W/big/usr/share/big"
head -c 50000000 /dev/urandom > "$W/big/usr/share/big/blob"
printf 'Package: big-blob\nVersion: 1.0-1\nArchitecture: all\nMaintainer: Bench <b@example.org>\nDescription: 50 MB of noise\n' > "$W/big/DEBIAN/control"
dpkg-deb -Znone --build "$W/big" "$W/corpus/debs/big-blob_1.0-1_all.deb" >> "$LOG" 2>&1
"$MBD" --home "$H" setup --identity bench --distributions bookworm:amd64 \
    --repositories test:Default:bookworm >> "$LOG" 2>&1
"$MBD" --home "$H" repo include $U "$W/corpus/debs" >> "$LOG" 2>&1
"$MBD" --home "$H" pub-key --binary > "$W/key.pgp"

# mbd's daemon on its home, nginx on the same published tree.
MP=$(free_port)
"$MBD" --home "$H" daemon --no-default-setup --http-endpoint "127.0.0.1:$MP" --ftp-endpoint none \
    --log-level warn >> "$LOG" 2>&1 &
PIDS+=($!)
NP=$(free_port)
mkdir -p "$W/nginx/tmp"
# As root, nginx's workers would run as nobody, who cannot enter the private work directory.
NGINX_USER=""
[ "$(id -u)" = 0 ] && NGINX_USER="user root;"
cat > "$W/nginx/nginx.conf" <<EOF
$NGINX_USER
worker_processes auto;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log $W/nginx/access.log;
    sendfile on; tcp_nopush on; tcp_nodelay on;
    keepalive_requests 100000;
    client_body_temp_path $W/nginx/tmp; proxy_temp_path $W/nginx/tmp;
    fastcgi_temp_path $W/nginx/tmp; uwsgi_temp_path $W/nginx/tmp; scgi_temp_path $W/nginx/tmp;
    server {
        listen 127.0.0.1:$NP;
        location /repositories/ { alias $H/repositories/; }
    }
}
EOF
nginx -c "$W/nginx/nginx.conf" -g 'daemon off;' >> "$LOG" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$MP/health" > /dev/null && curl -sf "http://127.0.0.1:$NP/repositories/test/dists/$U/InRelease" > /dev/null && break
    sleep 0.2
done

D=repositories/test/dists/$U
small=$(cd "$H" && find repositories/test/pool -name 'pkg-00002_*.deb' | head -1)
big=$(cd "$H" && find repositories/test/pool -name 'big-blob_*.deb' | head -1)
declare -A FILES=([InRelease]=$D/InRelease [small-pool]=$small [Packages.xz]=$D/main/binary-amd64/Packages.xz [50MB-pool]=$big)
ORDER=(InRelease small-pool Packages.xz 50MB-pool)
for f in "${ORDER[@]}"; do
    cmp <(curl -sf "http://127.0.0.1:$MP/${FILES[$f]}") <(curl -sf "http://127.0.0.1:$NP/${FILES[$f]}") \
        || { echo "serve: $f differs between mbd and nginx" >&2; exit 1; }
done
echo "# serve: $N packages, ${SECS}s per measurement, $(nproc) cores, small pool file $(stat -c %s "$H/$small") bytes"

to_ms() { # wrk's latency (12.3us, 4.5ms, 1.2s) in milliseconds
    awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.3f", n }'
}

declare -A RPS P99
measure() { # SERVER PORT FILE CONNECTIONS
    local out rps p50 p99 threads=1
    [ "$4" -gt 1 ] && threads=2
    out=$(wrk -t"$threads" -c"$4" -d"${SECS}s" --latency "http://127.0.0.1:$2/${FILES[$3]}")
    if grep -q 'Non-2xx\|Socket errors' <<< "$out"; then
        echo "serve: $1 $3 c=$4 had errors:" >&2
        echo "$out" >&2
    fi
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<< "$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<< "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<< "$out")")
    RPS[$1 $3 $4]=$rps
    P99[$1 $3 $4]=$p99
    echo "serve $1 $3 c=$4 $rps p50=$p50 p99=$p99"
}
for f in "${ORDER[@]}"; do
    for c in 1 64; do
        measure nginx "$NP" "$f" "$c"
        measure mbd "$MP" "$f" "$c"
    done
done
for f in "${ORDER[@]}"; do
    for c in 1 64; do
        awk -v f="$f" -v c="$c" -v m="${RPS[mbd $f $c]}" -v n="${RPS[nginx $f $c]}" \
            -v mp="${P99[mbd $f $c]}" -v np="${P99[nginx $f $c]}" \
            'BEGIN { printf "ratio %s c=%s req/s mbd/nginx %.2f p99 mbd/nginx %.2f\n", f, c, m / n, (np > 0 ? mp / np : 0) }'
    done
done

# A real client: apt fetching 200 small packages (and what they depend on) into an
# isolated root, once from each server; libc6 is "installed" so the synthetic packages resolve.
apt_root() { # NAME PORT
    local R=$W/apt-$1
    isolated_apt "$R" "deb [signed-by=$W/key.pgp] http://127.0.0.1:$2/repositories/test $U main"
    printf 'Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\nArchitecture: amd64\nMaintainer: x <x@example.org>\nDescription: stand-in\n\n' > "$R/var/lib/dpkg/status"
    APT_CONFIG=$R/apt.conf apt-get -qq --error-on=any update >> "$LOG" 2>&1
}
PKGS=$(seq -f 'pkg-%05g' 2 "$(( N / 200 ))" "$N" | head -200 | tr '\n' ' ')
apt_fetch() { # NAME → best of 3, wall seconds
    local R=$W/apt-$1 best="" t0 t1 s
    for _ in 1 2 3; do
        rm -f "$R"/var/cache/apt/archives/*.deb
        t0=$(date +%s%N)
        # shellcheck disable=SC2086
        APT_CONFIG=$R/apt.conf apt-get -qq -y --download-only install $PKGS >> "$LOG" 2>&1
        t1=$(date +%s%N)
        s=$(( (t1 - t0) / 1000000 ))
        if [ -z "$best" ] || [ "$s" -lt "$best" ]; then best=$s; fi
    done
    echo "$best $(find "$R/var/cache/apt/archives" -name '*.deb' | wc -l)"
}
apt_root nginx "$NP"
apt_root mbd "$MP"
read -r an ac <<< "$(apt_fetch nginx)"
read -r am mc <<< "$(apt_fetch mbd)"
awk -v an="$an" -v am="$am" -v ac="$ac" -v mc="$mc" 'BEGIN {
    printf "apt-install nginx %.3f s (%d packages)\napt-install mbd %.3f s (%d packages)\nratio apt-install mbd/nginx %.2f\n",
        an / 1000, ac, am / 1000, mc, am / an }'
