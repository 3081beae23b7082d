#!/usr/bin/env bash
# Set up and run the pair:   ./start.sh         (Ctrl-C stops everything it started)
# Set up and check it all:   ./start.sh test    (ruff, ruff format --check, mypy --strict, pytest)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
MODE=${1:-run}
shift || true

REDIS_PORT=${REDIS_PORT:-6379}
ORCHESTRATOR_PORT=${ORCHESTRATOR_PORT:-8000}
MICROSERVICE_X_PORT=${MICROSERVICE_X_PORT:-8001}

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
cleanup() {
    local pid
    for pid in "${CHILD_PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${CHILD_PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        for _ in $(seq 1 100); do
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
    log "starting Redis on 127.0.0.1:$REDIS_PORT (append-only files in data/redis)"
    setsid .venv/bin/python -m sidecar.localredis --port "$REDIS_PORT" --dir "$ROOT/data/redis" &
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
    if command -v dapr >/dev/null 2>&1 && [ "${DAPR_RUNTIME:-}" != "local" ]; then
        log "the Dapr CLI is on PATH: dapr run -f dapr.yaml"
        RUNNER=(dapr run -f dapr.yaml)
    else
        log "running both apps with the project's local sidecar (python -m sidecar run -f dapr.yaml)"
        RUNNER=(.venv/bin/python -m sidecar run -f dapr.yaml)
    fi
    log "Swagger: http://127.0.0.1:$ORCHESTRATOR_PORT/docs   (job-orchestrator)"
    log "         http://127.0.0.1:$MICROSERVICE_X_PORT/docs   (microservice-x)"
    log "Ctrl-C stops everything"
    setsid "${RUNNER[@]}" &
    CHILD_PIDS+=($!)
    wait "${CHILD_PIDS[-1]}"
    ;;
*)
    echo "usage: ./start.sh [test [pytest args...]]" >&2
    exit 2
    ;;
esac
