#!/usr/bin/env bash
# Responsiveness under mixed load (issue 19): while 64 clients download from the published
# tree, 20 uploads arrive, a `setup --update --pca` works against a slow archive (a local
# server that answers every request after 10 s) and a large include and publish runs, the
# read side is measured:
#
#   benches/mixed-load.sh GEN_SYNTHETIC_PY [PACKAGES] [SECONDS]
#     e.g. benches/mixed-load.sh ../shared/bench/gen-synthetic.py 2000 30
#
# Prints (wrk, HTTP/1.1 keep-alive, during the load):
#
#   load <what> <req/s> p50=<ms> p99=<ms>     downloads, /api/status, the web UI's home page
#   apt-update ok=<n> failed=<n>               `apt-get --error-on=any update` in a loop
#   uploads decided: <n> of 20 during the run, <n> by <seconds> s; setup: <seconds> s; ...
#
# and whether the targets hold: /api/status and the UI page p99 under 100 ms, no apt
# failure (a hash mismatch would be one). Needs: wrk, apt, dpkg-dev, curl, python3; builds
# mbd unless MBD is set.
set -euo pipefail
GEN=$(realpath "${1:?usage: benches/mixed-load.sh GEN_SYNTHETIC_PY [PACKAGES] [SECONDS]}")
N=${2:-2000}
SECS=${3:-30}
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"
H=$W/home
LOG=$W/log
U=bookworm-test-unstable
api() { "$MBD" --home "$H" api "$@"; }

# The tree (N synthetic packages in unstable; the large include puts them all into
# experimental as well), the uploads.
python3 "$GEN" "$N" "$W/corpus" --jobs "$(nproc)" >> "$LOG" 2>&1
"$HERE/fixtures/gen-uploads.sh" "$W/uploads" 20 --binary >> "$LOG" 2>&1
"$MBD" --home "$H" setup --identity bench --distributions bookworm:amd64 \
    --repositories test:Default:bookworm >> "$LOG" 2>&1
"$MBD" --home "$H" repo include $U "$W/corpus/debs" >> "$LOG" 2>&1
"$MBD" --home "$H" pub-key --binary > "$W/key.pgp"

MP=$(free_port)
"$MBD" --home "$H" daemon --no-default-setup --http-endpoint "127.0.0.1:$MP" --ftp-endpoint none \
    --log-level warn >> "$LOG" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$MP/health" > /dev/null && break; sleep 0.1; done
api set_repository test --allow-unauthenticated-uploads --allow-binary-uploads >> "$LOG"

# The slow archive: every answer after 10 s.
SP=$(free_port)
python3 - "$SP" >> "$LOG" 2>&1 <<'EOF' &
import http.server, socketserver, sys, time
class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(10)
        self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
Server(("127.0.0.1", int(sys.argv[1])), Slow).serve_forever()
EOF
PIDS+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$SP") 2>/dev/null && break; sleep 0.1; done

# An apt root that updates in a loop for the whole run.
R=$W/apt
isolated_apt "$R" "deb [signed-by=$W/key.pgp] http://127.0.0.1:$MP/repositories/test $U main"
apt_loop() {
    local ok=0 failed=0 end=$(( $(date +%s) + SECS ))
    while [ "$(date +%s)" -lt "$end" ]; do
        if APT_CONFIG=$R/apt.conf apt-get -qq --error-on=any update >> "$W/apt.log" 2>&1; then
            ok=$((ok + 1))
        else
            failed=$((failed + 1))
        fi
    done
    echo "apt-update ok=$ok failed=$failed"
}

# wrk: req/s, p50 and p99 in ms.
measure() { # NAME CONNECTIONS PATH
    local out
    out=$(wrk -t1 -c"$2" -d"${SECS}s" --latency "http://127.0.0.1:$MP$3")
    echo "$out" | awk -v name="$1" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec/ { rps = $2 }
        END { printf "load %s %.0f p50=%.3f p99=%.3f\n", name, rps, p50, p99 }'
}

POOL=$(cd "$H/repositories/test" && find pool -name '*.deb' -print -quit)
T0=$(date +%s)
# The writers.
(
    t0=$(date +%s)
    api setup --from-origins Debian --archives "http://127.0.0.1:$SP/debian/" --sources bookworm \
        --update --pca > "$W/setup.out" 2>&1 || true
    echo "setup: $(( $(date +%s) - t0 )) s ($(tail -1 "$W/setup.out"))" > "$W/setup.time"
) &
PIDS+=($!)
(
    t0=$(date +%s)
    "$MBD" --home "$H" repo include bookworm-test-experimental "$W/corpus/debs" >> "$LOG" 2>&1 || true
    echo "include+publish: $(( $(date +%s) - t0 )) s" > "$W/include.time"
) &
PIDS+=($!)
(
    for d in "$W"/uploads/*/; do
        for f in "$d"*; do
            case $f in *.changes) ;; *) curl -fsS -T "$f" "http://127.0.0.1:$MP/incoming/$(basename "$f")" >> "$LOG" 2>&1 ;; esac
        done
        curl -fsS -T "$(ls "$d"*.changes)" "http://127.0.0.1:$MP/incoming/$(basename "$(ls "$d"*.changes)")" >> "$LOG" 2>&1
        sleep 0.5
    done
) &
PIDS+=($!)
# The readers, all at once.
measure download 64 "/repositories/test/$POOL" > "$W/m1" &
M1=$!
measure status 1 "/api/status" > "$W/m2" &
M2=$!
measure ui-home 1 "/" > "$W/m3" &
M3=$!
apt_loop > "$W/m4" &
M4=$!
wait $M1 $M2 $M3 $M4
cat "$W/m1" "$W/m2" "$W/m3" "$W/m4"
decided() { api events 2>>"$LOG" | python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin) if e["kind"] in ("INSTALLED","REJECTED")))'; }
during=$(decided)
# The writers may still be at it; give them until 3 minutes after the start.
while { [ ! -f "$W/setup.time" ] || [ ! -f "$W/include.time" ]; } && [ $(( $(date +%s) - T0 )) -lt 180 ]; do sleep 1; done
sed -n '/^source/,+1p' "$W/setup.out" | head -4
for _ in $(seq 60); do [ "$(decided)" -ge 20 ] && break; sleep 1; done
echo "uploads decided: $during of 20 during the run, $(decided) by $(( $(date +%s) - T0 )) s; $(cat "$W/setup.time" 2>/dev/null || echo 'setup: unfinished'); $(cat "$W/include.time" 2>/dev/null || echo 'include+publish: unfinished')"
awk '
    /^load status/ || /^load ui-home/ { split($5, a, "="); if (a[2] >= 100) bad = bad " " $2 " p99 " a[2] " ms" }
    /^apt-update/ { split($3, f, "="); if (f[2] > 0) bad = bad " apt failed " f[2] " times" }
    END { if (bad == "") print "targets: met"; else print "targets: NOT met:" bad }' "$W/m2" "$W/m3" "$W/m4"
