#!/usr/bin/env bash
# Authentication cost under a flood (issue 24): 200 concurrent wrong logins against the
# daemon's API (half for the existing user admin, half for unknown names), and meanwhile one
# valid login. Prints the daemon's peak resident memory before and after, how long the flood
# took, and how long the valid login waited:
#
#   benches/logins.sh [CONCURRENT]
#
#   logins wrong=<n> seconds=<s> rss_before_mb=<m> rss_peak_mb=<m> valid_login_ms=<ms>
#
# Needs: python3, curl; builds mbd unless MBD is set.
set -euo pipefail
N=${1:-200}
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"
H=$W/home
"$MBD" --home "$H" setup --identity bench --distributions bookworm:amd64 \
    --repositories test:Default:bookworm > "$W/log" 2>&1
P=$(free_port)
MBD_ADMIN_PASSWORD=right-password "$MBD" --home "$H" daemon --no-default-setup --no-default-chroot \
    --http-endpoint "127.0.0.1:$P" --ftp-endpoint none --log-level warn >> "$W/log" 2>&1 &
PIDS+=($!)
DAEMON=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$P/health" > /dev/null && break; sleep 0.1; done
hwm() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$DAEMON/status"; }
before=$(hwm)
python3 - "$P" "$N" <<'PY' > "$W/out"
# Spread over four loopback addresses: one address may hold 128 connections.
import base64, http.client, sys, threading, time
port, n = int(sys.argv[1]), int(sys.argv[2])
def call(user, password, source="127.0.0.1"):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120, source_address=(source, 0))
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        c.request("GET", "/api/status", headers={"Authorization": "Basic " + auth})
        return c.getresponse().status
    except OSError:
        return 0
codes = []
def wrong(i):
    codes.append(call("admin" if i % 2 else f"nobody{i}", "wrong", f"127.0.0.{2 + i % 4}"))
threads = [threading.Thread(target=wrong, args=(i,)) for i in range(n)]
start = time.time()
for t in threads:
    t.start()
time.sleep(0.2)
t0 = time.time()
valid = call("admin", "right-password")
valid_ms = (time.time() - t0) * 1000
for t in threads:
    t.join()
print(f"{codes.count(401)} {time.time() - start:.2f} {valid} {valid_ms:.0f}")
PY
read -r refused secs valid valid_ms < "$W/out"
[ "$valid" = 200 ] || { echo "logins: the valid login got $valid" >&2; exit 1; }
echo "logins wrong=$refused seconds=$secs rss_before_mb=$before rss_peak_mb=$(hwm) valid_login_ms=$valid_ms"
