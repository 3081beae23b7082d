"""Which of grpc core's I/O engines the sidecar's gRPC server (and its clients) run on.

grpcio runs asyncio gRPC on EventEngine, whose poller and callback threads stand between the
socket and the event loop, so every call wakes more threads on its way in and out. grpc core's
polling engine, which grpcio used before, hands completions to the loop from one thread, and a
state call reaches the sidecar's handler sooner (measured figures: README, "gRPC engine").

The switch is grpc's own ``GRPC_EXPERIMENTS`` variable, read once, when grpc is imported, so
``python -m sidecar`` sets it before importing anything else, unless it is set already (set it
empty to keep grpc's defaults). The services set the same (dapr_support/grpc_engine.py; the
sidecar imports nothing of theirs).
"""

from __future__ import annotations

VARIABLE = "GRPC_EXPERIMENTS"
#: The EventEngine experiments grpcio 1.85 turns on for Python.
POLLING_ENGINE = (
    "-event_engine_client,-event_engine_listener,"
    "-event_engine_for_all_other_endpoints,-event_engine_callback_cq"
)
