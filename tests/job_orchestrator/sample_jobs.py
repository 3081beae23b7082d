"""A user's own job types, loaded by the orchestrator through ``JOB_HANDLERS`` in tests."""

from __future__ import annotations

import argparse
import threading
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from job_orchestrator.handlers import HandlerRegistry, JobContext, JobFailure

jobs = HandlerRegistry()
not_a_registry = "jobs"


class ShoutInput(BaseModel):
    model_config = ConfigDict(strict=True)

    text: str


@jobs.register("echo")
async def echo(ctx: JobContext) -> Any:
    """Answer with the input."""
    ctx.report_progress(50, "echoing")
    return ctx.input


@jobs.register("shout", input_model=ShoutInput)
def shout(ctx: JobContext) -> dict[str, str]:
    """Upper-case `text` (a plain function: it runs in a thread)."""
    return {"text": str(ctx.input["text"]).upper()}


@jobs.register("stamp")
async def stamp(ctx: JobContext) -> Any:
    """Answer with what JSON cannot carry as it is: a tuple and an int key (JSON changes them),
    or, with `when`, a datetime (JSON has no form for it)."""
    if ctx.input.get("when"):
        return {"at": datetime(2026, 1, 2, tzinfo=UTC)}
    return {"pair": (1, 2), 3: "three"}


_failed_once: set[str] = set()


@jobs.register("consume")
async def consume(ctx: JobContext) -> Any:
    """Take every item out of its input as it goes; with `failFirst`, fail the first attempt."""
    items = ctx.input["items"]
    taken = [items.pop() for _ in range(len(items))]
    if ctx.input.get("failFirst") and ctx.job_id not in _failed_once:
        _failed_once.add(ctx.job_id)
        raise RuntimeError("first attempt fails")
    return {"taken": taken}


@jobs.register("blob")
async def blob(ctx: JobContext) -> Any:
    """Answer with `size` characters of text, or put them in the progress message or the
    error instead (`into`: "result", "progress" or "error"); with `unpaired`, the text ends
    in an unpaired surrogate, which is not Unicode."""
    text = "x" * int(ctx.input.get("size", 1)) + ("\ud800" if ctx.input.get("unpaired") else "")
    into = ctx.input.get("into", "result")
    if into == "progress":
        ctx.report_progress(50, text)
        return None
    if into == "error":
        raise JobFailure(text)
    return {"blob": text}


@jobs.register("cli")
def cli(ctx: JobContext) -> Any:
    """A command-line tool's code, run as a plain function: argparse exits on bad arguments."""
    parser = argparse.ArgumentParser(prog="cli")
    parser.add_argument("--count", type=int, required=True)
    return {"count": parser.parse_args(ctx.input["args"]).count}


_barriers: dict[str, threading.Barrier] = {}
_barriers_lock = threading.Lock()


@jobs.register("meet")
def meet(ctx: JobContext) -> Any:
    """A plain function: waits (10 s at most) until `parties` jobs of its `group` all run."""
    with _barriers_lock:
        barrier = _barriers.setdefault(
            ctx.input["group"], threading.Barrier(int(ctx.input["parties"]))
        )
    barrier.wait(timeout=10)
    return {"met": True}


@jobs.register("hog")
async def hog(ctx: JobContext) -> Any:
    """An async handler that blocks the event loop for `seconds` (what handlers must not do)."""
    time.sleep(float(ctx.input["seconds"]))
    return None
