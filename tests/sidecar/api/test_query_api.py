"""The alpha query API through a real sidecar: PostgreSQL v1 answers, other stores refuse."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.conf import settings

from tests.procs import PostgresCluster
from tests.sidecar.api.conftest import Sidecar, component, unique

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def query_sidecar(
    postgres_server: PostgresCluster, registry: Path, workdir: Path
) -> Iterator[Sidecar]:
    folder = workdir / "query-resources"
    folder.mkdir()
    pg = component("pgstore", "state.postgresql", {"connectionString": postgres_server.dsn})
    (folder / "c.yaml").write_text(pg + "---\n" + component("memstore", "state.in-memory"))
    car = Sidecar("query-app", folder, registry, log_dir=workdir).start()
    yield car
    car.stop()


def test_query_over_http_and_grpc(query_sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = unique("q")
    http = httpx.Client(base_url=query_sidecar.http, timeout=10)
    items = [{"key": f"{tag}-{n}", "value": {"tag": tag, "n": n}} for n in range(3)]
    assert http.post("/v1.0/state/pgstore", json=items).status_code == 204
    query = {"filter": {"EQ": {"tag": tag}}, "sort": [{"key": "n", "order": "DESC"}]}
    found = http.post("/v1.0-alpha1/state/pgstore/query", json=query)
    assert found.status_code == 200, found.text
    assert [r["data"]["n"] for r in found.json()["results"]] == [2, 1, 0]
    assert all(r["etag"] for r in found.json()["results"])
    none = http.post("/v1.0-alpha1/state/pgstore/query", json={"filter": {"EQ": {"tag": "x"}}})
    assert none.status_code == 204
    refused = http.post("/v1.0-alpha1/state/memstore/query", json=query)
    assert refused.status_code == 500
    assert refused.json()["errorCode"] == "ERR_STATE_STORE_NOT_SUPPORTED"

    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", query_sidecar.http_port)
    monkeypatch.setattr(settings, "DAPR_API_TOKEN", None)
    alpha = pytest.warns(UserWarning, match="Query API is an Alpha")
    with DaprClient(address=query_sidecar.grpc_address) as client, alpha:
        result = client.query_state("pgstore", json.dumps(query))
        assert [json.loads(r.value)["n"] for r in result.results] == [2, 1, 0]
        with pytest.raises(DaprGrpcError) as bad:
            client.query_state("pgstore", "{not json")
        assert bad.value.code().name == "INVALID_ARGUMENT"
