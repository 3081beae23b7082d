"""Secret stores through a real sidecar: a state store whose Redis address comes from a
``secretKeyRef`` on a ``secretstores.local.file`` store, the secrets API over HTTP and over the
SDK's gRPC with daprd's answers and errors (a reference to a store that is not loaded stops the
sidecar: test_lifecycle)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from tests.conftest import RedisServer
from tests.sidecar.api.conftest import Sidecar, component, unique

SECRETS = {"plain": "p4ss", "port": 5432, "flags": [True, None], "team/db pass": "s/ash"}


def secret_resources(folder: Path, redis: RedisServer) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    secrets_file = folder.parent / "secrets.json"
    secrets_file.write_text(json.dumps({**SECRETS, "redis": {"host": redis.host}}))
    store = component("files", "secretstores.local.file", {"secretsFile": str(secrets_file)})
    multi = component(
        "multi",
        "secretstores.local.file",
        {"secretsFile": str(secrets_file), "multiValued": "true", "nestedSeparator": "."},
    )
    env_store = component("envsecrets", "secretstores.local.env", {"prefix": "SECRETTEST_"})
    raw_env = component("rawenv", "secretstores.local.env")
    state = (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: securestore\n"
        "spec:\n  type: state.redis\n  version: v1\n  metadata:\n"
        "  - name: redisHost\n    secretKeyRef:\n      name: redis:host\n"
        "auth:\n  secretStore: files\n"
    )
    (folder / "components.yaml").write_text(
        "\n---\n".join([state, store, multi, env_store, raw_env])
    )
    return folder


@pytest.fixture(scope="module")
def secret_sidecar(workdir: Path, registry: Path, redis_server: RedisServer) -> Iterator[Sidecar]:
    resources = secret_resources(workdir / "secret-resources", redis_server)
    env = {"SECRETTEST_TOKEN": "t0k3n", "DAPR_SECRETTEST": "hidden"}
    car = Sidecar("secret-app", resources, registry, log_dir=workdir, env=env)
    car.start()
    yield car
    car.stop()


def test_a_state_store_reads_its_address_from_a_secret(secret_sidecar: Sidecar) -> None:
    key = unique("secret")
    url = f"{secret_sidecar.http}/v1.0/state/securestore"
    saved = httpx.post(url, json=[{"key": key, "value": {"ok": 1}}], timeout=10)
    assert saved.status_code == 204, saved.text
    assert httpx.get(f"{url}/{key}", timeout=10).json() == {"ok": 1}
    meta = httpx.get(f"{secret_sidecar.http}/v1.0/metadata", timeout=10).json()
    kinds = {c["name"]: (c["type"], c.get("capabilities", [])) for c in meta["components"]}
    assert kinds["files"] == ("secretstores.local.file", [])
    assert kinds["multi"] == ("secretstores.local.file", ["MULTIPLE_KEY_VALUES_PER_SECRET"])


def test_secrets_over_http_as_daprd_answers(
    secret_sidecar: Sidecar, redis_server: RedisServer
) -> None:
    base = f"{secret_sidecar.http}/v1.0/secrets"
    assert httpx.get(f"{base}/files/plain", timeout=10).json() == {"plain": "p4ss"}
    # A name is unescaped after routing, as daprd does: an escaped slash stays in the name.
    slashed = httpx.get(f"{base}/files/team%2Fdb+pass", timeout=10)
    assert slashed.json() == {"team/db pass": "s/ash"}
    # Nested keys join with ":"; values that are not strings read as Go's fmt prints them.
    assert httpx.get(f"{base}/files/port", timeout=10).json() == {"port": "%!s(float64=5432)"}
    assert httpx.get(f"{base}/files/flags:0", timeout=10).json() == {"flags:0": "%!s(bool=true)"}
    assert httpx.get(f"{base}/files/flags:1", timeout=10).json() == {"flags:1": "%!s(<nil>)"}
    # multiValued: a top-level object is one secret with several keys.
    assert httpx.get(f"{base}/multi/redis", timeout=10).json() == {"host": redis_server.host}
    bulk_answer = httpx.get(f"{base}/multi/bulk", timeout=10)
    bulk = bulk_answer.json()
    assert bulk["plain"] == {"plain": "p4ss"} and "port" not in bulk  # contrib drops numbers
    # Go maps, written by json.NewEncoder: keys sorted, a newline at the end.
    assert list(bulk) == sorted(bulk) and bulk_answer.content.endswith(b"}}\n")
    # The env store: its prefix added to the name; DAPR_* variables never given out.
    assert httpx.get(f"{base}/envsecrets/TOKEN", timeout=10).json() == {"TOKEN": "t0k3n"}
    assert httpx.get(f"{base}/envsecrets/bulk", timeout=10).json() == {"TOKEN": {"TOKEN": "t0k3n"}}
    raw = httpx.get(f"{base}/rawenv/bulk", timeout=10).json()
    assert raw["SECRETTEST_TOKEN"] == {"SECRETTEST_TOKEN": "t0k3n"} and "DAPR_SECRETTEST" not in raw
    hidden = httpx.get(f"{base}/rawenv/DAPR_SECRETTEST", timeout=10).json()
    assert hidden == {"DAPR_SECRETTEST": ""}

    missing = httpx.get(f"{base}/files/nope", timeout=10)
    assert missing.status_code == 500
    assert missing.json() == {
        "errorCode": "ERR_SECRET_GET",
        "message": "failed getting secret with key nope from secret store files: "
        "secret nope not found",
    }
    unknown = httpx.get(f"{base}/vault/x", timeout=10)
    assert unknown.status_code == 401
    assert unknown.json() == {
        "errorCode": "ERR_SECRET_STORE_NOT_FOUND",
        "message": "failed finding secret store with key vault",
    }


def test_secrets_over_the_sdks_grpc(
    secret_sidecar: Sidecar, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dapr.clients import DaprClient
    from dapr.conf import settings

    # The SDK waits for the sidecar's health on its HTTP port before the first call.
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", secret_sidecar.http_port)
    with DaprClient(address=secret_sidecar.grpc_address) as client:
        assert client.get_secret("files", "plain").secret == {"plain": "p4ss"}
        bulk = client.get_bulk_secret("files").secrets
        assert bulk["redis:host"] == {"redis:host": redis_server.host}
        with pytest.raises(grpc.RpcError) as missing:  # the SDK passes these errors on as is
            client.get_secret("files", "nope")
        assert missing.value.code() == grpc.StatusCode.INTERNAL
        with pytest.raises(grpc.RpcError) as unknown:
            client.get_secret("vault", "x")
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert unknown.value.details() == "failed finding secret store with key vault"


def test_no_secret_store_answers_not_configured(sidecar: Sidecar) -> None:
    answer = httpx.get(f"{sidecar.http}/v1.0/secrets/files/x", timeout=10)
    assert answer.status_code == 500
    assert answer.json() == {
        "errorCode": "ERR_SECRET_STORES_NOT_CONFIGURED",
        "message": "secret store is not configured",
    }
