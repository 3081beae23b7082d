"""Reading a sidecar's metrics port as Prometheus does: one sample per line."""

from __future__ import annotations

import re

import httpx

from tests.sidecar.api.conftest import Sidecar

SAMPLE = re.compile(r"^([a-z_]+)\{(.*)\} (\S+)$")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(car: Sidecar) -> tuple[str, Samples]:
    return scrape_port(car.metrics_port)


def scrape_port(port: int) -> tuple[str, Samples]:
    """The metrics a sidecar serves on ``port``: the text and its samples."""
    response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for line in response.text.splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', match[2]))
            samples[(match[1], labels)] = float(match[3])
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)
