"""The alpha query API through HTTP and both SDK clients: PostgreSQL v1 answers, others refuse."""

from __future__ import annotations

import httpx
import pytest

from tests.sidecar.api.conformance import Conformance
from tests.sidecar.api.conftest import unique
from tests.sidecar.api.transports import Api, fails

pytestmark = [
    pytest.mark.postgres,
    # Both SDK clients warn on every query_state call.
    pytest.mark.filterwarnings("ignore:The State Store Query API is an Alpha:UserWarning"),
]


async def test_query(api: Api, conformance: Conformance) -> None:
    if not conformance.has("pgstore"):
        pytest.skip("PostgreSQL server binaries are not installed")
    tag = unique(f"q-{api.name}")
    # Over gRPC only contentType application/json makes daprd store JSON: other values are
    # bytes, kept base64-encoded (isbinary) and never matched by a query, as in contrib.
    json_value = {"contentType": "application/json"}
    for n in range(3):
        await api.save("pgstore", f"{tag}-{n}", {"tag": tag, "n": n}, metadata=json_value)
    await api.save("pgstore", f"{tag}-bytes", {"tag": tag, "n": 9})
    query = {"filter": {"EQ": {"tag": tag}}, "sort": [{"key": "n", "order": "DESC"}]}
    found = await api.query("pgstore", query)
    # Results carry the user's keys, not the stored (prefixed) ones.
    expected = [(f"{tag}-{n}", {"tag": tag, "n": n}) for n in (2, 1, 0)]
    if api.name == "http":  # HTTP values are JSON whatever the metadata says
        expected.insert(0, (f"{tag}-bytes", {"tag": tag, "n": 9}))
    assert found == expected
    few = await api.query("pgstore", {**query, "page": {"limit": 2}})
    assert few == expected[:2]
    assert await api.query("pgstore", {"filter": {"EQ": {"tag": "none"}}}) == []  # HTTP 204
    refused = await fails(api.query("memstore", query))
    refused.expect(
        http=(500, "ERR_STATE_STORE_NOT_SUPPORTED"),
        grpc=("INTERNAL", "DAPR_STATE_QUERYING_NOT_SUPPORTED"),
    )


async def test_query_answers_are_written_as_daprds_json_encoder_writes_them(
    conformance: Conformance,
) -> None:
    """daprd writes a QueryResponse with json.NewEncoder: each value a json.RawMessage,
    compacted with HTML-safe escapes (PostgreSQL's JSONB text has spaces), then a newline."""
    if not conformance.has("pgstore"):
        pytest.skip("PostgreSQL server binaries are not installed")
    tag = unique("q-raw")
    async with httpx.AsyncClient(base_url=conformance.sidecar.http, timeout=10) as http:
        saved = await http.post(
            "/v1.0/state/pgstore", json=[{"key": tag, "value": {"tag": tag, "html": "<b>"}}]
        )
        assert saved.status_code == 204, saved.text
        query = {"filter": {"EQ": {"tag": tag}}}
        found = await http.post("/v1.0-alpha1/state/pgstore/query", json=query)
    assert found.status_code == 200, found.text
    etag = found.json()["results"][0]["etag"]
    data = f'{{"tag":"{tag}","html":"\\u003cb\\u003e"}}'
    assert (
        found.content
        == f'{{"results":[{{"key":"{tag}","data":{data},"etag":"{etag}"}}]}}\n'.encode()
    )
