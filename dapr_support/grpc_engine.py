"""Which of grpc core's I/O engines the services' Dapr clients run on.

grpcio runs asyncio gRPC on EventEngine, whose poller and callback threads stand between the
socket and the event loop, so every call wakes more threads on its way out and back. grpc
core's polling engine, which grpcio used before, hands completions to the loop from one thread,
and the services' calls to their sidecar cost less CPU and come back sooner (measured figures:
README, "gRPC engine").

The switch is grpc's own ``GRPC_EXPERIMENTS`` variable, read once, when grpc is imported: each
service's entry point sets it before importing anything else, unless it is set already (set it
empty to keep grpc's defaults). The sidecar keeps grpc's default engine: on the polling engine
an answer that is not ready at once (a state call waits for Redis) pays a wake-up of the
poller thread, which added more to its calls than the engine saved (README, "gRPC engine").
"""

from __future__ import annotations

VARIABLE = "GRPC_EXPERIMENTS"
#: The EventEngine experiments grpcio 1.85 turns on for Python.
POLLING_ENGINE = (
    "-event_engine_client,-event_engine_listener,"
    "-event_engine_for_all_other_endpoints,-event_engine_callback_cq"
)
