# shellcheck shell=bash
#
# Test peers for spillway's integration tests: kinesalite (Kinesis API, npm)
# and moto's server mode (S3, Kinesis, DynamoDB, PyPI), both on loopback only.
#
# Usage (from the project's test script, which may use `set -euo pipefail`):
#
#   source scripts/peers.sh
#   peers_install          # idempotent: npm ci + Python venv at .peers/venv
#   peers_start            # start both peers, export SPILLWAY_TEST_* and AWS_* vars
#   peers_trap_stop        # optional: stop the peers when the calling shell exits
#   ...run tests...
#   peers_stop             # safe to call twice
#
# After peers_start these are exported:
#   SPILLWAY_TEST_KINESALITE=http://127.0.0.1:PORT
#   SPILLWAY_TEST_MOTO=http://127.0.0.1:PORT
#   SPILLWAY_TEST_PYTHON=/abs/path/to/.peers/venv/bin/python
#   AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
#   AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
#   AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
#   AWS_EC2_METADATA_DISABLED=true
#   AWS_ENDPOINT_URL=$SPILLWAY_TEST_MOTO  (fail-safe default endpoint: a client
#                                          built without an explicit endpoint
#                                          still cannot reach real AWS)
#   NO_PROXY/no_proxy extended with 127.0.0.1,localhost
# and AWS_PROFILE, AWS_DEFAULT_PROFILE, AWS_SESSION_TOKEN, AWS_SECURITY_TOKEN,
# AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, AWS_CONTAINER_CREDENTIALS_* and
# AWS_ENDPOINT_URL_* are unset, so tests can never talk to a real account.
#
# Optional knobs (environment, read by peers_start):
#   SPILLWAY_PEERS_KINESALITE_STREAM_MS   time streams stay CREATING/UPDATING/
#                                         DELETING in kinesalite (default 500)
#   SPILLWAY_PEERS_KINESALITE_SHARD_LIMIT account-wide open-shard limit in
#                                         kinesalite (default 10000; kinesalite's
#                                         own default of 10 is hit after a few
#                                         test streams)
#   SPILLWAY_PEERS_START_TIMEOUT          seconds to wait for each peer (default 60)
#
# Everything lives under .peers/ (git-ignored) and tests/peers/node_modules/.
# One set of peers per checkout: peers_start stops peers left over in
# .peers/pids by an earlier run of this checkout.

# Repo root, from this file's own location (works when sourced or executed).
PEERS_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PEERS_NODE_DIR="$PEERS_REPO_ROOT/tests/peers"
PEERS_STATE_DIR="$PEERS_REPO_ROOT/.peers"
PEERS_VENV="$PEERS_STATE_DIR/venv"
PEERS_LOG_DIR="$PEERS_STATE_DIR/logs"
PEERS_PIDS_FILE="$PEERS_STATE_DIR/pids"

_peers_log() { printf 'peers: %s\n' "$*" >&2; }
_peers_die() { printf 'peers: ERROR: %s\n' "$*" >&2; return 1; }

# Print the last lines of a log file to stderr, indented.
_peers_tail() {
    if [ -f "$1" ]; then
        printf 'peers: --- last lines of %s ---\n' "$1" >&2
        tail -n "${2:-40}" "$1" | sed 's/^/    /' >&2
        printf 'peers: --- end of %s ---\n' "$1" >&2
    fi
}

# sha256 of the given files plus any extra text on stdin.
_peers_hash() {
    local extra
    extra="$(cat)"
    if command -v sha256sum >/dev/null 2>&1; then
        { cat "$@"; printf '%s' "$extra"; } | sha256sum | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then
        { cat "$@"; printf '%s' "$extra"; } | shasum -a 256 | cut -d' ' -f1
    else
        { cat "$@"; printf '%s' "$extra"; } |
            python3 -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
    fi
}

# ---------------------------------------------------------------------------
# peers_install: npm ci in tests/peers, Python venv at .peers/venv.
# ---------------------------------------------------------------------------

_peers_install_node() {
    local lock="$PEERS_NODE_DIR/package-lock.json"
    local stamp="$PEERS_NODE_DIR/node_modules/.spillway-peers.stamp"
    local log="$PEERS_LOG_DIR/npm-ci.log"
    local want have=""

    command -v node >/dev/null 2>&1 || { _peers_die "node not found on PATH (needed for kinesalite; Node >= 18)"; return 1; }
    command -v npm >/dev/null 2>&1 || { _peers_die "npm not found on PATH (needed to install kinesalite)"; return 1; }
    [ -f "$lock" ] || { _peers_die "missing $lock"; return 1; }

    want="$(node --version | _peers_hash "$PEERS_NODE_DIR/package.json" "$lock")" || {
        _peers_die "cannot hash $lock"; return 1; }
    if [ -f "$stamp" ]; then have="$(cat "$stamp")"; fi
    if [ "$want" = "$have" ] && [ -f "$PEERS_NODE_DIR/node_modules/kinesalite/index.js" ]; then
        return 0
    fi

    _peers_log "installing kinesalite: npm ci in tests/peers (log: $log)"
    # --ignore-scripts: the only install script is leveldown's node-gyp-build,
    # and leveldown is only loaded by kinesalite with --path (we run in memory).
    if ! (cd "$PEERS_NODE_DIR" && npm ci --ignore-scripts --no-audit --no-fund) >"$log" 2>&1; then
        _peers_tail "$log"
        _peers_die "npm ci in $PEERS_NODE_DIR failed (see $log); is the npm registry reachable?"
        return 1
    fi
    if ! (cd "$PEERS_NODE_DIR" && node -e 'require("kinesalite")') >>"$log" 2>&1; then
        _peers_tail "$log"
        _peers_die "kinesalite was installed but cannot be loaded by $(command -v node) (see $log)"
        return 1
    fi
    printf '%s\n' "$want" >"$stamp"
}

_peers_install_python() {
    local req="$PEERS_NODE_DIR/requirements.txt"
    local stamp="$PEERS_VENV/.spillway-peers.stamp"
    local log="$PEERS_LOG_DIR/pip-install.log"
    local want have="" pyver

    command -v python3 >/dev/null 2>&1 || { _peers_die "python3 not found on PATH (needed for moto; Python >= 3.9)"; return 1; }
    [ -f "$req" ] || { _peers_die "missing $req"; return 1; }

    pyver="$(python3 -c 'import sys; print(sys.version)')" || { _peers_die "python3 does not run"; return 1; }
    want="$(printf '%s\n%s' "$(command -v python3)" "$pyver" | _peers_hash "$req")" || {
        _peers_die "cannot hash $req"; return 1; }
    if [ -f "$stamp" ]; then have="$(cat "$stamp")"; fi
    if [ "$want" = "$have" ] && [ -x "$PEERS_VENV/bin/moto_server" ]; then
        return 0
    fi

    _peers_log "installing Python peers: venv at .peers/venv + pip install -r tests/peers/requirements.txt (log: $log; takes about a minute)"
    # A fresh venv each time the requirements change, so no stale packages linger.
    rm -rf "$PEERS_VENV"
    if ! python3 -m venv "$PEERS_VENV" >"$log" 2>&1; then
        _peers_tail "$log"
        rm -rf "$PEERS_VENV"
        _peers_die "python3 -m venv $PEERS_VENV failed (on Debian/Ubuntu install the python3-venv package)"
        return 1
    fi
    if ! "$PEERS_VENV/bin/python" -m pip install --disable-pip-version-check --no-input \
            -r "$req" >>"$log" 2>&1; then
        _peers_tail "$log"
        _peers_die "pip install -r $req into $PEERS_VENV failed (see $log); is PyPI reachable?"
        return 1
    fi
    if ! "$PEERS_VENV/bin/python" -c 'import moto, boto3, pyarrow, aws_kinesis_agg, flask' >>"$log" 2>&1; then
        _peers_tail "$log"
        _peers_die "packages were installed into $PEERS_VENV but cannot be imported (see $log)"
        return 1
    fi
    [ -x "$PEERS_VENV/bin/moto_server" ] || { _peers_die "$PEERS_VENV/bin/moto_server missing after pip install"; return 1; }
    printf '%s\n' "$want" >"$stamp"
}

peers_install() {
    mkdir -p "$PEERS_LOG_DIR" || { _peers_die "cannot create $PEERS_LOG_DIR"; return 1; }
    local lockfile="$PEERS_STATE_DIR/install.lock" rc=0
    # Serialize concurrent installs from the same checkout when flock exists.
    if command -v flock >/dev/null 2>&1; then
        (
            flock 9 || exit 1
            _peers_install_node && _peers_install_python
        ) 9>"$lockfile" || rc=$?
    else
        { _peers_install_node && _peers_install_python; } || rc=$?
    fi
    if [ "$rc" -ne 0 ]; then
        _peers_die "peers_install failed"
        return 1
    fi
    return 0
}

# ---------------------------------------------------------------------------
# peers_start / peers_stop
# ---------------------------------------------------------------------------

# A free TCP port on 127.0.0.1 (there is a small race until the peer binds it;
# _peers_launch retries with a new port if the peer dies early).
_peers_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Command line of a process, or nothing if it does not exist.
_peers_cmdline() {
    if [ -r "/proc/$1/cmdline" ]; then
        tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
    else
        ps -p "$1" -o args= 2>/dev/null || true
    fi
}

# Does an HTTP server answer at this URL (any status code)?
_peers_http_answers() {
    local code
    if command -v curl >/dev/null 2>&1; then
        code="$(curl --noproxy '*' -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null)" || true
        [ -n "$code" ] && [ "$code" != "000" ]
    else
        python3 - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request, urllib.error
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    opener.open(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
PY
    fi
}

# Wait until the peer process answers HTTP on its port; fail if it dies or
# the timeout passes. Args: name pid url log
# Returns 0 = up, 2 = died early (caller may retry), 1 = timeout.
_peers_wait() {
    local name="$1" pid="$2" url="$3" log="$4"
    local timeout="${SPILLWAY_PEERS_START_TIMEOUT:-60}"
    local deadline=$((SECONDS + timeout))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            return 2
        fi
        if _peers_http_answers "$url"; then
            return 0
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            _peers_tail "$log"
            _peers_die "$name (pid $pid) did not answer at $url within ${timeout}s (log: $log)"
            return 1
        fi
        sleep 0.2
    done
}

# Start one peer in the background, retrying with another port if it dies
# before answering (e.g. the port was taken in the meantime).
# Args: name; the command is built by _peers_cmd_<name> PORT into PEERS_CMD.
# Sets PEERS_LAUNCHED_PORT.
_peers_launch() {
    local name="$1" attempt port pid log="$PEERS_LOG_DIR/$1.log" rc
    for attempt in 1 2 3; do
        port="$(_peers_free_port)" || { _peers_die "cannot pick a free loopback port (python3 failed)"; return 1; }
        "_peers_cmd_$name" "$port"
        printf 'peers: starting %s on 127.0.0.1:%s (attempt %s): %s\n' \
            "$name" "$port" "$attempt" "$PEERS_CMD_DESC" >"$log"
        # stdin from /dev/null so the peer never competes for the caller's terminal.
        "${PEERS_CMD[@]}" </dev/null >>"$log" 2>&1 &
        pid=$!
        printf '%s %s %s\n' "$pid" "$name" "$port" >>"$PEERS_PIDS_FILE"
        rc=0
        _peers_wait "$name" "$pid" "http://127.0.0.1:$port/" "$log" || rc=$?
        case "$rc" in
            0) PEERS_LAUNCHED_PORT="$port"; return 0 ;;
            2) wait "$pid" 2>/dev/null || true
               _peers_log "$name exited before answering on port $port (attempt $attempt)"
               cp "$log" "$log.attempt$attempt" 2>/dev/null || true ;;
            *) return 1 ;;
        esac
    done
    _peers_tail "$log"
    _peers_die "$name failed to start 3 times (log: $log)"
    return 1
}

_peers_cmd_kinesalite() {
    # kinesalite's cli has no --host option and listens on all interfaces, so
    # run its server factory directly and bind it to 127.0.0.1 only.
    local ms="${SPILLWAY_PEERS_KINESALITE_STREAM_MS:-500}"
    local limit="${SPILLWAY_PEERS_KINESALITE_SHARD_LIMIT:-10000}"
    PEERS_CMD=(node -e '
const [port, ms, limit, dir] = process.argv.slice(1);
const kinesalite = require(require("path").join(dir, "node_modules", "kinesalite"));
const server = kinesalite({
  createStreamMs: Number(ms), updateStreamMs: Number(ms), deleteStreamMs: Number(ms),
  shardLimit: Number(limit),
});
server.on("error", (e) => { console.error("kinesalite:", e.message); process.exit(1); });
server.listen(Number(port), "127.0.0.1", () => {
  const a = server.address();
  console.log("Listening at http://%s:%s", a.address, a.port);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
' "$1" "$ms" "$limit" "$PEERS_NODE_DIR" spillway-peer-kinesalite)
    PEERS_CMD_DESC="node -e <kinesalite server bound to 127.0.0.1> port=$1 streamMs=$ms shardLimit=$limit"
}

_peers_cmd_moto() {
    PEERS_CMD=("$PEERS_VENV/bin/python" "$PEERS_VENV/bin/moto_server" -H 127.0.0.1 -p "$1")
    PEERS_CMD_DESC="${PEERS_CMD[*]}"
}

# Stop the processes recorded in .peers/pids. Safe to call twice (and when
# nothing was started). Only kills PIDs whose command line still looks like
# one of our peers, so a recycled PID is never hit.
peers_stop() {
    local pid name port cmd pids=() deadline
    if [ -f "$PEERS_PIDS_FILE" ]; then
        while read -r pid name port; do
            [ -n "${pid:-}" ] || continue
            cmd="$(_peers_cmdline "$pid")"
            case "$cmd" in
                *spillway-peer-kinesalite*|*"$PEERS_VENV/bin/moto_server"*)
                    kill -TERM "$pid" 2>/dev/null && pids+=("$pid") ;;
            esac
        done <"$PEERS_PIDS_FILE"
        if [ "${#pids[@]}" -gt 0 ]; then
            deadline=$((SECONDS + 10))
            for pid in "${pids[@]}"; do
                while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
                    sleep 0.1
                done
                if kill -0 "$pid" 2>/dev/null; then
                    kill -KILL "$pid" 2>/dev/null || true
                fi
                # Reap it if it is our child (quiet, and harmless if it is not).
                wait "$pid" 2>/dev/null || true
            done
        fi
        rm -f "$PEERS_PIDS_FILE"
    fi
    unset SPILLWAY_TEST_KINESALITE SPILLWAY_TEST_MOTO
    return 0
}

_peers_export_env() {
    export SPILLWAY_TEST_PYTHON="$PEERS_VENV/bin/python"
    # Dummy credentials only; nothing can fall back to a real account.
    export AWS_ACCESS_KEY_ID=testing
    export AWS_SECRET_ACCESS_KEY=testing
    export AWS_REGION=us-east-1
    export AWS_DEFAULT_REGION=us-east-1
    export AWS_CONFIG_FILE=/dev/null
    export AWS_SHARED_CREDENTIALS_FILE=/dev/null
    export AWS_EC2_METADATA_DISABLED=true
    unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN \
          AWS_ROLE_ARN AWS_ROLE_SESSION_NAME AWS_WEB_IDENTITY_TOKEN_FILE \
          AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_CREDENTIALS_FULL_URI \
          AWS_CONTAINER_AUTHORIZATION_TOKEN AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
    local v
    for v in $(compgen -e | grep '^AWS_ENDPOINT_URL_' || true); do unset "$v"; done
    # Fail-safe default endpoint: any SDK client without an explicit endpoint
    # goes to moto on loopback, never to AWS.
    export AWS_ENDPOINT_URL="$SPILLWAY_TEST_MOTO"
    # Keep loopback traffic away from any configured HTTP proxy.
    local np="${NO_PROXY:-${no_proxy:-}}"
    case ",$np," in *,127.0.0.1,*) ;; *) np="${np:+$np,}127.0.0.1" ;; esac
    case ",$np," in *,localhost,*) ;; *) np="$np,localhost" ;; esac
    export NO_PROXY="$np" no_proxy="$np"
}

# Start kinesalite and moto_server on free loopback ports and export the
# SPILLWAY_TEST_* / AWS_* variables. Runs peers_install first (cheap when up
# to date). `peers_start --trap` also calls peers_trap_stop.
peers_start() {
    local want_trap=0
    case "${1:-}" in
        --trap) want_trap=1 ;;
        "") ;;
        *) _peers_die "peers_start: unknown argument '$1' (only --trap)"; return 1 ;;
    esac
    peers_install || return 1
    mkdir -p "$PEERS_LOG_DIR" || return 1
    # Peers left over by an earlier run in this checkout.
    peers_stop
    : >"$PEERS_PIDS_FILE"
    rm -f "$PEERS_LOG_DIR"/*.log.attempt*
    if [ "$want_trap" -eq 1 ]; then peers_trap_stop; fi

    local kport mport
    if ! _peers_launch kinesalite; then peers_stop; return 1; fi
    kport="$PEERS_LAUNCHED_PORT"
    if ! _peers_launch moto; then peers_stop; return 1; fi
    mport="$PEERS_LAUNCHED_PORT"

    export SPILLWAY_TEST_KINESALITE="http://127.0.0.1:$kport"
    export SPILLWAY_TEST_MOTO="http://127.0.0.1:$mport"
    _peers_export_env
    _peers_log "kinesalite at $SPILLWAY_TEST_KINESALITE, moto at $SPILLWAY_TEST_MOTO (logs in $PEERS_LOG_DIR)"
}

# The COMMAND of a `trap -p` line (trap -- 'COMMAND' SIG), or nothing.
_peers_trap_command() {
    [ -n "$1" ] || return 0
    eval "set -- $1"
    printf '%s' "${3:-}"
}

# Arrange for peers_stop to run when the calling shell exits, keeping any EXIT
# trap the caller already has (it runs after peers_stop). INT and TERM are
# turned into an exit (so the EXIT trap runs) unless the caller trapped them.
peers_trap_stop() {
    local existing
    existing="$(_peers_trap_command "$(trap -p EXIT)")"
    case "$existing" in
        *peers_stop*) return 0 ;;  # already registered
    esac
    if [ -n "$existing" ]; then
        # shellcheck disable=SC2064
        trap "peers_stop; $existing" EXIT
    else
        trap 'peers_stop' EXIT
    fi
    [ -n "$(trap -p INT)" ] || trap 'exit 130' INT
    [ -n "$(trap -p TERM)" ] || trap 'exit 143' TERM
}
