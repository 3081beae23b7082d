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

setup_venv() {
    if [ ! -x .venv/bin/python ]; then
        log "creating .venv"
        "$(find_python)" -m venv .venv
    fi
    local stamp=.venv/.installed-stamp
    local want
    want=$(cat pyproject.toml | cksum)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        log "installing the project and its test tools into .venv"
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
        echo "$want" >"$stamp"
    fi
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
# (in data/run/) with the ports replaced, so the real Dapr CLI and the local sidecar both see it.
run_file() {
    local defaults="6379 8000 3500 50001 8001 3501 50002"
    local chosen="$REDIS_PORT $ORCHESTRATOR_PORT $ORCHESTRATOR_DAPR_HTTP_PORT $ORCHESTRATOR_DAPR_GRPC_PORT $MICROSERVICE_X_PORT $MICROSERVICE_X_DAPR_HTTP_PORT $MICROSERVICE_X_DAPR_GRPC_PORT"
    if [ "$defaults" = "$chosen" ]; then
        echo dapr.yaml
        return 0
    fi
    .venv/bin/python - <<'PY'
import os
from pathlib import Path

import yaml

root = Path.cwd()
out = root / "data" / "run"
(out / "components").mkdir(parents=True, exist_ok=True)
env = os.environ
ports = {
    "job-orchestrator": ("ORCHESTRATOR_PORT", "ORCHESTRATOR_DAPR_HTTP_PORT", "ORCHESTRATOR_DAPR_GRPC_PORT"),
    "microservice-x": ("MICROSERVICE_X_PORT", "MICROSERVICE_X_DAPR_HTTP_PORT", "MICROSERVICE_X_DAPR_GRPC_PORT"),
}
template = yaml.safe_load((root / "dapr.yaml").read_text())
template.setdefault("common", {})["resourcesPaths"] = [str(out / "components")]
for app in template["apps"]:
    app_port, http_port, grpc_port = ports[app["appID"]]
    app["appDirPath"] = str(root)
    app["appPort"] = int(env[app_port])
    app["daprHTTPPort"] = int(env[http_port])
    app["daprGRPCPort"] = int(env[grpc_port])
(out / "dapr.yaml").write_text(yaml.safe_dump(template, sort_keys=False))
for source in (root / "components").glob("*.yaml"):
    text = source.read_text().replace("127.0.0.1:6379", f"127.0.0.1:{env['REDIS_PORT']}")
    (out / "components" / source.name).write_text(text)
PY
    echo data/run/dapr.yaml
}

# Until both apps answer /healthz: 0. 1 when START_TIMEOUT (default 120 s) passes first, the
# runner ($1) exits, or an app's sidecar (port after each URL) goes away once it was up: the local
# runner stops an app's sidecar when the app exits (e.g. a bad JOB_HANDLERS exits at once).
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
while waiting and not gone and time.monotonic() < deadline:
    try:
        os.kill(runner, 0)
    except ProcessLookupError:
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
    print(f"start.sh: {url} did not answer; see the log above", file=sys.stderr)
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

setup_venv
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
    log "job-orchestrator: app $APP_HOST:$ORCHESTRATOR_PORT, sidecar HTTP $ORCHESTRATOR_DAPR_HTTP_PORT / gRPC $ORCHESTRATOR_DAPR_GRPC_PORT"
    log "microservice-x:   app $APP_HOST:$MICROSERVICE_X_PORT, sidecar HTTP $MICROSERVICE_X_DAPR_HTTP_PORT / gRPC $MICROSERVICE_X_DAPR_GRPC_PORT"
    log "Redis:            127.0.0.1:$REDIS_PORT"
    log "Swagger: http://127.0.0.1:$ORCHESTRATOR_PORT/docs   (start with POST /Jobs/StartJobWithTimeout)"
    log "         http://127.0.0.1:$MICROSERVICE_X_PORT/docs"
    log "Ctrl-C stops everything"
    setsid "${RUNNER[@]}" &
    CHILD_PIDS+=($!)
    # Both apps up, or stop everything: the runner (like `dapr run -f`) keeps the others
    # running when one app exits, which would leave a half-started pair behind.
    if ! wait_until_up "${CHILD_PIDS[-1]}" \
        "http://127.0.0.1:$ORCHESTRATOR_PORT/healthz" "$ORCHESTRATOR_DAPR_HTTP_PORT" \
        "http://127.0.0.1:$MICROSERVICE_X_PORT/healthz" "$MICROSERVICE_X_DAPR_HTTP_PORT"; then
        log "the pair did not start; stopping everything"
        exit 1
    fi
    log "both services are up"
    wait "${CHILD_PIDS[-1]}"
    ;;
*)
    echo "usage: ./start.sh [test [pytest args...]]" >&2
    exit 2
    ;;
esac
