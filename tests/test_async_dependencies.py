"""Every route handler and dependency of both services is async: FastAPI runs a plain function
in a worker thread, which cost 0.1 ms of CPU on every request that used one (scenario 1 of the
benchmark: 0.29 -> 0.41 ms per POST /jobs, from one such dependency)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter

from job_orchestrator import api as orchestrator_api
from job_orchestrator import subscriptions
from microservice_x import api as mx_api
from microservice_x import subscriber

ROUTERS = {
    "job_orchestrator.api.router": orchestrator_api.router,
    "job_orchestrator.api.health_router": orchestrator_api.health_router,
    "job_orchestrator.api.worker_only_router": orchestrator_api.worker_only_router,
    "job_orchestrator.subscriptions.router": subscriptions.router,
    "microservice_x.api.router": mx_api.router,
    "microservice_x.subscriber.router": subscriber.router,
}


def _calls(dependant: Dependant) -> Iterator[object]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def _is_async(call: object) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one (FastAPI's security
    schemes)."""
    dunder_call = vars(type(call)).get("__call__")
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(dunder_call)


@pytest.mark.parametrize("name", ROUTERS)
def test_every_route_and_dependency_is_async(name: str) -> None:
    router: APIRouter = ROUTERS[name]
    routes = [route for route in router.routes if isinstance(route, APIRoute)]
    assert routes, name
    plain = [
        f"{route.path}: {getattr(call, '__qualname__', call)}"
        for route in routes
        for call in _calls(route.dependant)
        if not _is_async(call)
    ]
    assert not plain, plain
