"""A tiny real app registered as `job-orchestrator`, for invocation tests that must not wait on
the real orchestrator: it answers POST /jobs like the orchestrator and remembers what it got.

Run with `python -m tests.microservice_x.orchestrator_stub` and Dapr's environment (APP_PORT).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()
received: list[dict[str, Any]] = []


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/jobs")
async def start(request: Request) -> JSONResponse:
    body = await request.json()
    received.append({"body": body, "idempotencyKey": request.headers.get("idempotency-key")})
    if body.get("type") == "unknown":
        return JSONResponse(
            {
                "type": "about:blank",
                "title": "Unknown job type",
                "status": 422,
                "detail": "job type 'unknown' is not registered; known: ['wait']",
                "knownTypes": ["wait"],
            },
            status_code=422,
            media_type="application/problem+json",
        )
    if request.headers.get("x-api-key") == "unknown-key":
        return problem(401, "Unauthorized", "missing or unknown API key")
    if request.headers.get("x-api-key") == "other-owner-key":
        detail = f"your API key is bound to owner 'someone-else', not {body.get('owner')!r}"
        return problem(403, "Owner does not match the API key", detail)
    if body.get("type") == "no-id":
        return JSONResponse({"status": "New"}, status_code=202)
    job = {"id": uuid.uuid4().hex, "status": "New", "owner": body.get("owner"), **body}
    return JSONResponse(job, status_code=202, headers={"Location": f"/jobs/{job['id']}"})


def problem(status: int, title: str, detail: str) -> JSONResponse:
    content = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return JSONResponse(content, status_code=status, media_type="application/problem+json")


@app.get("/received")
async def seen() -> list[dict[str, Any]]:
    return received


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["APP_PORT"]), log_level="warning")
