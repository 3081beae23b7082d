"""Job types: handlers registered by name, the context they run with, and the built-in ``wait``."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dapr_support.jsonbytes import dumps
from dapr_support.text import lone_surrogate_at, replace_lone_surrogates
from job_orchestrator.threads import HandlerThreads

logger = logging.getLogger(__name__)

ProgressSink = Callable[[float, str], None]

#: Why a number JSON cannot carry is refused (Python's parser reads NaN, Infinity and 1e400).
NOT_FINITE = "Input should be a finite number; JSON has no NaN or Infinity"
#: How deeply a job's input or result may nest. The sidecar writes at most 254 levels (daprd
#: reads up to 10,000), and the stored record and its event wrap the value in a few more.
MAX_JSON_DEPTH = 128
#: What a number must fit: daprd's outbox reads the job's event into Go values, its numbers
#: as float64s, and fails to publish an event holding one beyond that range.
BEYOND_FLOAT64 = "an integer beyond the float64 range (about 1.8e308)"
TOO_DEEP = f"nesting deeper than {MAX_JSON_DEPTH} levels"
#: What an input problem found by json_problem_at is called in a 422's details (msg, type).
_INPUT_PROBLEMS = {
    BEYOND_FLOAT64: (
        f"Input should be a number within float64's range, not {BEYOND_FLOAT64}",
        "float64_range",
    ),
    TOO_DEEP: (f"Input should nest at most {MAX_JSON_DEPTH} levels deep", "too_deep"),
}
#: Characters of a progress message or an error message kept with the job.
MESSAGE_CHARS = 4096


class JobFailure(Exception):
    """Raised by a handler to fail its job with a clear message (no stack trace stored)."""


class HandlerExit(Exception):
    """A handler tried to stop the process: its job fails, the replica goes on."""


class UnknownJobType(Exception):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown job type {name!r}; known types: {', '.join(known)}")


class InvalidJobInput(Exception):
    """The input does not fit the handler's input model; ``errors`` name the fields."""

    def __init__(self, job_type: str, errors: list[dict[str, Any]]) -> None:
        self.job_type = job_type
        self.errors = errors
        super().__init__(f"invalid input for job type {job_type!r}")


class JobContext:
    """What a handler gets: its input, a progress reporter and a cancellation flag.

    Thread-safe, so plain (non-async) handlers running in a thread can use it too.
    """

    def __init__(self, job_id: str, job_input: dict[str, Any], progress: ProgressSink) -> None:
        self.job_id = job_id
        self.input = job_input
        self._progress = progress
        self._cancelled = threading.Event()

    def report_progress(self, percent: float, message: str = "") -> None:
        """Record progress; the worker publishes it, throttled, so call it as often as you like."""
        value = float(percent)
        clamped = 0.0 if math.isnan(value) else max(0.0, min(100.0, value))
        self._progress(clamped, stored_text(str(message)))

    @property
    def cancelled(self) -> bool:
        """True once the job was asked to stop; long plain handlers should check it."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()


Handler = Callable[[JobContext], Awaitable[Any]] | Callable[[JobContext], Any]


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    name: str
    func: Handler
    input_model: type[BaseModel] | None
    description: str


class HandlerRegistry:
    """Job type name -> handler; the decorator is how a job type is added."""

    def __init__(self) -> None:
        self._handlers: dict[str, HandlerSpec] = {}

    def register(
        self, name: str, *, input_model: type[BaseModel] | None = None, description: str = ""
    ) -> Callable[[Handler], Handler]:
        def decorator(func: Handler) -> Handler:
            if name in self._handlers:
                raise ValueError(f"job type {name!r} is already registered")
            doc = description or (inspect.getdoc(func) or "").split("\n")[0]
            self._handlers[name] = HandlerSpec(name, func, input_model, doc)
            return func

        return decorator

    def include(self, other: HandlerRegistry) -> None:
        """Add every job type of ``other``; a name both hold is an error, not an override."""
        clash = sorted(self._handlers.keys() & other._handlers.keys())
        if clash:
            raise ValueError(f"job type(s) registered twice: {', '.join(clash)}")
        self._handlers.update(other._handlers)

    @property
    def names(self) -> list[str]:
        return sorted(self._handlers)

    def get(self, name: str) -> HandlerSpec:
        try:
            return self._handlers[name]
        except KeyError:
            raise UnknownJobType(name, self.names) from None

    def validate_input(self, name: str, job_input: dict[str, Any]) -> dict[str, Any]:
        """The input as the handler will see it (defaults filled in), or InvalidJobInput."""
        spec = self.get(name)
        _require_storable(name, job_input)
        if spec.input_model is None:
            return job_input
        try:
            validated = spec.input_model.model_validate(job_input).model_dump(mode="json")
        except ValidationError as exc:
            raise InvalidJobInput(name, [dict(e) for e in exc.errors(include_url=False)]) from None
        # A lax float field reads the text "inf" as a number and model_dump keeps it.
        _require_storable(name, validated)
        return validated

    async def run(self, name: str, ctx: JobContext, threads: HandlerThreads | None = None) -> Any:
        """Run the handler; a plain function runs in one of ``threads`` (None: the loop's
        default executor), so the event loop stays free.

        A handler that tries to stop the process (``sys.exit()``, which argparse calls on bad
        arguments, or KeyboardInterrupt) raises HandlerExit instead: let through, it stopped
        the replica with every job on it, and then each replica that took the job over.
        """
        func = self.get(name).func
        try:
            if inspect.iscoroutinefunction(func):
                return await func(ctx)
            call = functools.partial(contextvars.copy_context().run, func, ctx)
            if threads is None:
                return await asyncio.get_running_loop().run_in_executor(None, call)
            if threads.full:
                logger.warning(
                    "job %s waits for a thread: all %s of JOB_THREADS run plain handlers that "
                    "have not returned (those of cancelled or timed-out jobs too)",
                    ctx.job_id,
                    threads.size,
                )
            return await threads.run(call)
        except SystemExit as exc:
            raise HandlerExit(
                f"the handler called sys.exit({exc.code!r}), which would stop the replica; "
                "raise JobFailure to fail a job"
            ) from exc
        except KeyboardInterrupt as exc:
            raise HandlerExit(
                "the handler raised KeyboardInterrupt, which would stop the replica"
            ) from exc


def json_problem_at(
    value: Any, max_depth: int = MAX_JSON_DEPTH
) -> tuple[tuple[str | int, ...], str] | None:
    """Where ``value`` holds what a job cannot carry (a pydantic-style ``loc``), and what it
    is; None if nothing. That is what JSON cannot carry (NaN or an infinity, an object or a
    key of a type JSON has no form for), and what Dapr does not take: an integer beyond the
    float64 range (BEYOND_FLOAT64) or a container nested deeper than ``max_depth`` (TOO_DEEP).

    Stored, such a value would make every answer carrying the job fail, or the job's write
    or its event. Walked without recursion, so input as deep as the JSON parser accepted is
    fine; a container met twice (shared, or holding itself) is looked at once.
    """
    # Each item's path is (parent's path, step), spelled out only for the one found.
    todo: list[tuple[Any, int, Any]] = [(None, 1, value)]
    seen: set[int] = set()
    while todo:
        path, depth, item = todo.pop()
        what = _json_problem(item)
        if what is None and depth > max_depth and isinstance(item, dict | list | tuple):
            what = TOO_DEEP
        if what is not None:
            steps: list[str | int] = []
            while path is not None:
                path, step = path
                steps.append(step)
            return tuple(reversed(steps)), what
        if isinstance(item, dict | list | tuple) and id(item) not in seen:
            seen.add(id(item))
            if isinstance(item, dict):
                todo.extend(((path, str(key)), depth + 1, child) for key, child in item.items())
            else:
                todo.extend(((path, i), depth + 1, child) for i, child in enumerate(item))
    return None


def _json_problem(item: Any) -> str | None:
    if isinstance(item, float):
        return None if math.isfinite(item) else "a non-finite number"
    if isinstance(item, dict):
        for key in item:
            if not isinstance(key, str | int | float | None) or _json_problem(key) is not None:
                return f"a key of type {type(key).__name__}"
        return None
    if isinstance(item, int):  # bool too
        try:
            float(item)  # rounds as Go's ParseFloat does, and fails where it does
        except OverflowError:
            return BEYOND_FLOAT64
        return None
    if isinstance(item, str | list | tuple | None):
        return None
    return f"a {type(item).__name__}"


class UnstorableResult(ValueError):
    """A handler's result that cannot be stored as JSON, with where and why."""


def as_stored(result: Any, max_bytes: int) -> Any:
    """``result`` as every reader of the job will see it, once stored as JSON (a tuple is a
    list, a number key a string), or UnstorableResult: JSON cannot carry it, it holds text
    that is not Unicode, or it is over ``max_bytes`` of compact JSON.

    Stored, such a result could never be written or answered: the job would stay running
    until it was taken over and run again, or every answer carrying it would fail.
    """
    try:
        text = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        found = json_problem_at(result)
        if found is None:  # a container holding itself, or nested too deeply
            raise UnstorableResult(
                f"the handler returned a value JSON cannot carry: {exc}"
            ) from None
        loc, what = found
        where = ".".join(["result", *map(str, loc)])
        raise UnstorableResult(
            f"the handler returned {what} at {where}, which JSON cannot carry"
        ) from None
    stored = json.loads(text)
    found = json_problem_at(stored)
    if found is not None:
        loc, what = found
        where = ".".join(["result", *map(str, loc)])
        raise UnstorableResult(f"the handler returned {what} at {where}, which a job cannot carry")
    surrogate_at = lone_surrogate_at(stored, "result")
    if surrogate_at is not None:
        raise UnstorableResult(
            f"the handler returned text holding an unpaired UTF-16 surrogate at {surrogate_at}, "
            "which is not Unicode and cannot be stored"
        )
    size = len(dumps(stored))
    if size > max_bytes:
        raise UnstorableResult(
            f"the handler returned a result of {size} bytes of JSON; the limit is {max_bytes} "
            "(MAX_RESULT_BYTES): keep large data elsewhere and return where it is"
        )
    return stored


def stored_text(text: str) -> str:
    """A message from a handler (progress, error) as it is stored: unpaired surrogates become
    U+FFFD, as Go's JSON reading makes them, and text past MESSAGE_CHARS is cut, saying so."""
    text = replace_lone_surrogates(text)
    if len(text) <= MESSAGE_CHARS:
        return text
    return f"{text[:MESSAGE_CHARS]}... ({len(text) - MESSAGE_CHARS} more characters cut)"


def _require_storable(job_type: str, job_input: dict[str, Any]) -> None:
    found = json_problem_at(job_input)
    if found is not None:
        # Parsed JSON holds only these: a non-finite number, a huge integer, deep nesting.
        loc, what = found
        msg, kind = _INPUT_PROBLEMS.get(what, (NOT_FINITE, "finite_number"))
        raise InvalidJobInput(job_type, [{"loc": loc, "msg": msg, "type": kind}])


class WaitInput(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")  # a misspelt field is a 422

    seconds: float = Field(default=5.0, ge=0, le=24 * 3600, description="How long to sleep.")
    fail: bool = Field(default=False, description="Fail at the end with a clear error.")


async def wait_handler(ctx: JobContext) -> dict[str, Any]:
    """Sleep `seconds`, reporting progress about once a second; fail at the end if `fail`."""
    args = WaitInput.model_validate(ctx.input)
    started = time.monotonic()
    remaining = args.seconds
    while remaining > 0:
        await asyncio.sleep(min(1.0, remaining))
        elapsed = time.monotonic() - started
        remaining = args.seconds - elapsed
        percent = 100.0 if args.seconds == 0 else min(100.0, 100.0 * elapsed / args.seconds)
        ctx.report_progress(round(percent, 1), f"waited {min(elapsed, args.seconds):.1f} s")
    if args.fail:
        raise JobFailure(f"the wait job was asked to fail (fail=true) after {args.seconds:g} s")
    return {"waitedSeconds": args.seconds}


def default_registry() -> HandlerRegistry:
    """A registry holding the built-in job types."""
    registry = HandlerRegistry()
    registry.register("wait", input_model=WaitInput)(wait_handler)
    return registry
