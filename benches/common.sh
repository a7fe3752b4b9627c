# Shared by the benchmark scripts (sourced): the mbd binary (built unless MBD is set), a
# work directory W removed at exit with the processes in PIDS, free ports, isolated apt roots.
HERE=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${MBD:-}" ]; then
    cargo build --release --quiet --manifest-path "$HERE/Cargo.toml"
    MBD=$HERE/target/release/mbd
fi
W=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# An apt root in DIR (configuration in DIR/apt.conf) that reads one deb line.
isolated_apt() { # DIR DEB_LINE
    local R=$1
    mkdir -p "$R"/etc/apt/{apt.conf.d,preferences.d,sources.list.d,trusted.gpg.d} "$R"/var/lib/apt/lists/partial \
        "$R"/var/cache/apt/archives/partial "$R"/var/lib/dpkg
    touch "$R/var/lib/dpkg/status" "$R/etc/apt/sources.list"
    echo "$2" > "$R/etc/apt/sources.list.d/mbd.list"
    cat > "$R/apt.conf" <<CONF
Dir "$R/"; Dir::State "$R/var/lib/apt/"; Dir::State::status "$R/var/lib/dpkg/status";
Dir::Cache "$R/var/cache/apt/"; Dir::Etc "$R/etc/apt/"; APT::Architecture "amd64";
APT::Architectures { "amd64"; }; Acquire::Languages "none"; Debug::NoLocking "true";
APT::Sandbox::User "root";
CONF
}
