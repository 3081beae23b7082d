#!/usr/bin/env bash
# Set up and run the pair:   ./start.sh         (Ctrl-C stops everything it started)
# Set up and check it all:   ./start.sh test    (ruff, ruff format --check, mypy --strict, pytest)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
MODE=${1:-run}
shift || true

# Fixed default ports; each can be overridden from the environment.
export REDIS_PORT=${REDIS_PORT:-6379}
export ORCHESTRATOR_PORT=${ORCHESTRATOR_PORT:-8000}
export ORCHESTRATOR_DAPR_HTTP_PORT=${ORCHESTRATOR_DAPR_HTTP_PORT:-3500}
export ORCHESTRATOR_DAPR_GRPC_PORT=${ORCHESTRATOR_DAPR_GRPC_PORT:-50001}
export MICROSERVICE_X_PORT=${MICROSERVICE_X_PORT:-8001}
export MICROSERVICE_X_DAPR_HTTP_PORT=${MICROSERVICE_X_DAPR_HTTP_PORT:-3501}
export MICROSERVICE_X_DAPR_GRPC_PORT=${MICROSERVICE_X_DAPR_GRPC_PORT:-50002}
export ORCHESTRATOR_DAPR_METRICS_PORT=${ORCHESTRATOR_DAPR_METRICS_PORT:-9090}
export MICROSERVICE_X_DAPR_METRICS_PORT=${MICROSERVICE_X_DAPR_METRICS_PORT:-9091}
# Both apps listen here (their own default is 0.0.0.0, for containers): only this machine
# reaches them, as it alone reaches the sidecars and Redis. APP_HOST=0.0.0.0 opens them up.
export APP_HOST=${APP_HOST:-127.0.0.1}

log() { printf '[start.sh] %s\n' "$*"; }

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "start.sh: Python 3.11 or newer is required" >&2
    return 1
}

# Install $1 into .venv: "." (the project, to run it) or ".[test]" (with the test tools). The
# stamp holds pyproject.toml's checksum and what was installed, so a change of either installs
# again, but the project alone is not installed over the test tools.
setup_venv() {
    local wanted=$1
    if [ ! -x .venv/bin/python ]; then
        log "creating .venv"
        "$(find_python)" -m venv .venv
    fi
    local stamp=.venv/.installed-stamp sum installed=""
    sum=$(cksum <pyproject.toml)
    [ ! -f "$stamp" ] || installed=$(cat "$stamp")
    # A stamp of the checksum alone was written when every set-up installed the test tools.
    case "$installed" in
    "$sum .[test]" | "$sum") return 0 ;;
    "$sum $wanted") return 0 ;;
    esac
    if [ "$wanted" = . ]; then
        log "installing the project into .venv"
    else
        log "installing the project and its test tools into .venv"
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$wanted"
    echo "$sum $wanted" >"$stamp"
}

# Each port a run listens on must be free: a port held by another `./start.sh` would answer
# this one's health checks for it. Arguments: VARIABLE@HOST, the host the process binds.
ports_free() {
    .venv/bin/python - "$@" <<'PY'
import errno
import os
import socket
import sys

chosen: dict[int, str] = {}
problems = []
for item in sys.argv[1:]:
    name, host = item.split("@")
    value = os.environ[name]
    if not value.isdigit() or not 0 < int(value) < 65536:
        problems.append(f"{name}={value} is not a port number")
        continue
    port = int(value)
    if port in chosen:
        problems.append(f"{name} and {chosen[port]} are both {port}; give each its own port")
        continue
    chosen[port] = name
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family) as sock:
        # As the servers bind: a port whose last connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc})"
            problems.append(
                f"port {port} ({name}) {why} on {host}: stop what listens there (another "
                f"./start.sh?) or choose another port with {name}=..."
            )
for problem in problems:
    print(f"start.sh: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
}

CHILD_PIDS=()
# Stop what was started in reverse order, each to the end: the apps (through the runner) before
# Redis, so a stopping orchestrator can still finish or hand back its running jobs. The runner
# gives each app 30 s and each sidecar 10 s, hence the 45 s bound before SIGKILL.
cleanup() {
    local i pid
    for ((i = ${#CHILD_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${CHILD_PIDS[i]}
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 450); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_redis() {
    if .venv/bin/python -c "import sys; from sidecar.localredis import redis_answers; sys.exit(0 if redis_answers($REDIS_PORT) else 1)"; then
        log "Redis already answers on 127.0.0.1:$REDIS_PORT"
        return 0
    fi
    if ! ports_free REDIS_PORT@127.0.0.1; then
        echo "start.sh: what listens on 127.0.0.1:$REDIS_PORT does not answer as Redis" >&2
        exit 1
    fi
    # One data folder per port, so a second Redis (another REDIS_PORT) never shares the files.
    local dir=data/redis
    [ "$REDIS_PORT" = 6379 ] || dir=data/redis-$REDIS_PORT
    log "starting Redis on 127.0.0.1:$REDIS_PORT (append-only files in $dir)"
    setsid .venv/bin/python -m sidecar.localredis --port "$REDIS_PORT" --dir "$ROOT/$dir" &
    CHILD_PIDS+=($!)
    for _ in $(seq 1 100); do
        if .venv/bin/python -c "import sys; from sidecar.localredis import redis_answers; sys.exit(0 if redis_answers($REDIS_PORT) else 1)"; then
            return 0
        fi
        sleep 0.1
    done
    echo "start.sh: Redis did not start on port $REDIS_PORT" >&2
    exit 1
}

# dapr.yaml and components/ hold the default ports; when any is overridden, run a copy of them
# with the ports replaced, so the real Dapr CLI and the local sidecar both see it. The copy is in
# data/run/<orchestrator port>/: a second run on other ports does not rewrite the first's.
run_file() {
    local defaults="6379 8000 3500 50001 9090 8001 3501 50002 9091"
    local chosen="$REDIS_PORT $ORCHESTRATOR_PORT $ORCHESTRATOR_DAPR_HTTP_PORT $ORCHESTRATOR_DAPR_GRPC_PORT $ORCHESTRATOR_DAPR_METRICS_PORT $MICROSERVICE_X_PORT $MICROSERVICE_X_DAPR_HTTP_PORT $MICROSERVICE_X_DAPR_GRPC_PORT $MICROSERVICE_X_DAPR_METRICS_PORT"
    if [ "$defaults" = "$chosen" ]; then
        echo dapr.yaml
        return 0
    fi
    .venv/bin/python - <<'PY'
import os
import shutil
from pathlib import Path

import yaml

root = Path.cwd()
out = root / "data" / "run" / os.environ["ORCHESTRATOR_PORT"]
# From scratch: a component removed from components/ must not live on here.
shutil.rmtree(out / "components", ignore_errors=True)
(out / "components").mkdir(parents=True)
env = os.environ
ports = {
    "job-orchestrator": "ORCHESTRATOR",
    "microservice-x": "MICROSERVICE_X",
}
template = yaml.safe_load((root / "dapr.yaml").read_text())
template.setdefault("common", {})["resourcesPaths"] = [str(out / "components")]
for app in template["apps"]:
    prefix = ports[app["appID"]]
    app["appDirPath"] = str(root)
    app["appPort"] = int(env[f"{prefix}_PORT"])
    app["daprHTTPPort"] = int(env[f"{prefix}_DAPR_HTTP_PORT"])
    app["daprGRPCPort"] = int(env[f"{prefix}_DAPR_GRPC_PORT"])
    app["metricsPort"] = int(env[f"{prefix}_DAPR_METRICS_PORT"])
(out / "dapr.yaml").write_text(yaml.safe_dump(template, sort_keys=False))
for source in (root / "components").glob("*.yaml"):
    text = source.read_text().replace("127.0.0.1:6379", f"127.0.0.1:{env['REDIS_PORT']}")
    (out / "components" / source.name).write_text(text)
PY
    echo "data/run/$ORCHESTRATOR_PORT/dapr.yaml"
}

# Until both apps answer /healthz: 0. 1 when START_TIMEOUT (default 120 s) passes first, the
# runner ($1) exits (the local runner does when an app or sidecar exits before its app listens),
# or an app's sidecar (port after each URL) goes away once it was up.
wait_until_up() {
    .venv/bin/python - "$@" <<'PY'
import os
import signal
import socket
import sys
import time
import urllib.request

signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: start.sh's own trap reports it
runner = int(sys.argv[1])
waiting = dict(zip(sys.argv[2::2], map(int, sys.argv[3::2])))  # app health URL -> sidecar port
deadline = time.monotonic() + float(os.environ.get("START_TIMEOUT", "120"))
sidecar_seen: set[int] = set()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


gone = []
runner_gone = False
while waiting and not gone and time.monotonic() < deadline:
    try:
        os.kill(runner, 0)
    except ProcessLookupError:
        runner_gone = True
        break
    for url, port in list(waiting.items()):
        if answers(url):
            del waiting[url]
        elif listening(port):
            sidecar_seen.add(port)
        elif port in sidecar_seen:
            gone.append(url)
    time.sleep(0.3)
for url in waiting:
    if url in gone:
        why = "its sidecar stopped before it answered"
    elif runner_gone:
        why = "the runner exited before it answered"
    elif gone:
        why = "not answering when the other app's sidecar stopped"
    else:
        why = "it did not answer within START_TIMEOUT"
    print(f"start.sh: {url}: {why}; see the log above and .dapr/logs/", file=sys.stderr)
sys.exit(1 if waiting else 0)
PY
}

run_checks() {
    local status=0
    log "ruff check"
    .venv/bin/ruff check . || status=1
    log "ruff format --check"
    .venv/bin/ruff format --check . || status=1
    log "mypy --strict"
    .venv/bin/mypy || status=1
    log "pytest"
    .venv/bin/python -m pytest "$@" || status=1
    return $status
}

case "$MODE" in
test)
    setup_venv ".[test]"
    ;;
run)
    setup_venv .
    # Before starting anything (Redis answering on REDIS_PORT is reused, so not checked here).
    ports_free ORCHESTRATOR_PORT@"$APP_HOST" MICROSERVICE_X_PORT@"$APP_HOST" \
        ORCHESTRATOR_DAPR_HTTP_PORT@127.0.0.1 ORCHESTRATOR_DAPR_GRPC_PORT@127.0.0.1 \
        ORCHESTRATOR_DAPR_METRICS_PORT@127.0.0.1 MICROSERVICE_X_DAPR_HTTP_PORT@127.0.0.1 \
        MICROSERVICE_X_DAPR_GRPC_PORT@127.0.0.1 MICROSERVICE_X_DAPR_METRICS_PORT@127.0.0.1 ||
        exit 1
    ;;
*)
    echo "usage: ./start.sh [test [pytest args...]]" >&2
    exit 2
    ;;
esac
mkdir -p data
ensure_redis
export PATH="$ROOT/.venv/bin:$PATH"

case "$MODE" in
test)
    run_checks "$@"
    ;;
run)
    RUN_FILE=$(run_file)
    if [ "${DAPR_SECURE:-0}" = 1 ]; then
        # Random secrets (unless given); the runner or `dapr run` hands this environment to both
        # sidecars and both apps. Only here, not in `test` mode: tests start their own sidecars.
        rand_hex() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
        export DAPR_API_TOKEN=${DAPR_API_TOKEN:-$(rand_hex)} APP_API_TOKEN=${APP_API_TOKEN:-$(rand_hex)}
        if [ -z "${API_KEYS:-}" ] && [ -z "${API_KEYS_FILE:-}" ]; then
            export ORCHESTRATOR_API_KEY=${ORCHESTRATOR_API_KEY:-$(rand_hex)}
            (umask 077 && printf '%s=microservice-x\n%s=portal\n' "$ORCHESTRATOR_API_KEY" "$(rand_hex)" >data/api-keys)
            export API_KEYS_FILE="$ROOT/data/api-keys"
        fi
        log "DAPR_SECURE=1: DAPR_API_TOKEN and APP_API_TOKEN set; API keys (key=owner) in ${API_KEYS_FILE:-API_KEYS}"
    fi
    if command -v dapr >/dev/null 2>&1 && [ "${DAPR_RUNTIME:-}" != "local" ]; then
        log "the Dapr CLI is on PATH: dapr run -f $RUN_FILE"
        RUNNER=(dapr run -f "$RUN_FILE")
    else
        log "running both apps with the project's local sidecar (python -m sidecar run -f $RUN_FILE)"
        RUNNER=(.venv/bin/python -m sidecar run -f "$RUN_FILE")
    fi
    log "job-orchestrator: app $APP_HOST:$ORCHESTRATOR_PORT, sidecar HTTP $ORCHESTRATOR_DAPR_HTTP_PORT / gRPC $ORCHESTRATOR_DAPR_GRPC_PORT / metrics $ORCHESTRATOR_DAPR_METRICS_PORT"
    log "microservice-x:   app $APP_HOST:$MICROSERVICE_X_PORT, sidecar HTTP $MICROSERVICE_X_DAPR_HTTP_PORT / gRPC $MICROSERVICE_X_DAPR_GRPC_PORT / metrics $MICROSERVICE_X_DAPR_METRICS_PORT"
    log "Redis:            127.0.0.1:$REDIS_PORT"
    log "Swagger: http://127.0.0.1:$ORCHESTRATOR_PORT/docs   (start with POST /Jobs/StartJobWithTimeout)"
    log "         http://127.0.0.1:$MICROSERVICE_X_PORT/docs"
    log "Ctrl-C stops everything"
    setsid "${RUNNER[@]}" &
    CHILD_PIDS+=($!)
    # Both apps up, or stop everything: `dapr run -f` keeps the others running when an app or
    # daprd exits (the local runner too, once every app listens), leaving half a pair behind.
    if ! wait_until_up "${CHILD_PIDS[-1]}" \
        "http://127.0.0.1:$ORCHESTRATOR_PORT/healthz" "$ORCHESTRATOR_DAPR_HTTP_PORT" \
        "http://127.0.0.1:$MICROSERVICE_X_PORT/healthz" "$MICROSERVICE_X_DAPR_HTTP_PORT"; then
        log "the pair did not start; stopping everything"
        exit 1
    fi
    log "both services are up"
    wait "${CHILD_PIDS[-1]}"
    ;;
esac
