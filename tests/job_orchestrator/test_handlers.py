"""Handler registry, the handler context, and the built-in ``wait`` job."""

from __future__ import annotations

import asyncio
import threading
from datetime import date
from typing import Any

import pytest
from pydantic import BaseModel

from job_orchestrator.handler_modules import HandlerModuleError, load_registry
from job_orchestrator.handlers import (
    BEYOND_FLOAT64,
    MAX_JSON_DEPTH,
    MESSAGE_CHARS,
    TOO_DEEP,
    HandlerExit,
    HandlerRegistry,
    InvalidJobInput,
    JobContext,
    JobFailure,
    UnknownJobType,
    UnstorableResult,
    as_stored,
    default_registry,
    json_problem_at,
    stored_text,
)
from job_orchestrator.threads import HandlerThreads


def test_decorator_registers_by_name_and_rejects_duplicates() -> None:
    registry = HandlerRegistry()

    @registry.register("echo")
    async def echo(ctx: JobContext) -> Any:
        """Return the input."""
        return ctx.input

    assert registry.names == ["echo"]
    assert registry.get("echo").description == "Return the input."
    with pytest.raises(ValueError, match="already registered"):
        registry.register("echo")(echo)


def test_unknown_type_lists_known_ones() -> None:
    with pytest.raises(UnknownJobType) as info:
        default_registry().get("nope")
    assert info.value.known == ["wait"]
    assert "wait" in str(info.value)


def test_wait_input_is_validated_with_field_names() -> None:
    registry = default_registry()
    assert registry.validate_input("wait", {}) == {"seconds": 5.0, "fail": False}
    with pytest.raises(InvalidJobInput) as info:
        registry.validate_input("wait", {"seconds": "soon"})
    assert info.value.errors[0]["loc"] == ("seconds",)


def test_what_json_cannot_carry_is_found_wherever_it_is() -> None:
    nan = "a non-finite number"
    assert json_problem_at({"a": [1, {"b": float("inf")}]}) == (("a", 1, "b"), nan)
    assert json_problem_at([0.5, float("nan")]) == ((1,), nan)
    assert json_problem_at({"a": 1e308, "b": None, "c": ["x", True], 4: (1,)}) is None
    assert json_problem_at({"at": [date(2026, 1, 2)]}) == (("at", 0), "a date")
    assert json_problem_at({"s": {frozenset(): 1}}) == (("s",), "a key of type frozenset")
    assert json_problem_at({"k": {float("nan"): 1}}) == (("k",), "a key of type float")
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):  # deeper than the recursion limit
        node["k"] = node = {}
    node["x"] = float("-inf")
    assert json_problem_at(deep, max_depth=10**6) == (("k",) * 5000 + ("x",), nan)
    loop: list[Any] = [1]
    loop.append(loop)
    assert json_problem_at(loop) is None  # looked at once: no endless walk


def test_what_dapr_cannot_carry_is_found_wherever_it_is() -> None:
    """Integers past float64's range (daprd's outbox fails to publish their event) and
    nesting past MAX_JSON_DEPTH (the sidecar writes at most 254 levels)."""
    huge = 2**1024  # the first integer float64 cannot hold
    assert json_problem_at({"a": [1, {"n": huge}]}) == (("a", 1, "n"), BEYOND_FLOAT64)
    assert json_problem_at({"n": -huge}) == (("n",), BEYOND_FLOAT64)
    assert json_problem_at({"n": 10**308, "m": -(2**1023), "t": True}) is None

    def nested(levels: int) -> list[Any]:
        top: list[Any] = []
        node = top
        for _ in range(levels - 1):
            node.append([])
            node = node[0]
        return top

    assert json_problem_at(nested(MAX_JSON_DEPTH)) is None
    assert json_problem_at(nested(MAX_JSON_DEPTH + 1)) == ((0,) * MAX_JSON_DEPTH, TOO_DEEP)
    assert json_problem_at({"a": nested(MAX_JSON_DEPTH)}) == (("a",) + (0,) * 127, TOO_DEEP)


def test_a_result_dapr_cannot_carry_is_refused_naming_where() -> None:
    with pytest.raises(UnstorableResult, match=r"float64 range .* at result\.rows\.1"):
        as_stored({"rows": [1, 10**400]}, LIMIT)
    deep: list[Any] = []
    node = deep
    for _ in range(300):  # what the sidecar could not write: the job was taken over and rerun
        node.append([])
        node = node[0]
    with pytest.raises(UnstorableResult, match=f"nesting deeper than {MAX_JSON_DEPTH} levels"):
        as_stored({"tree": deep}, LIMIT)


LIMIT = 1000


def test_a_result_is_stored_as_json_reads_it_back() -> None:
    assert as_stored({"pair": (1, 2), 3: "three", None: True}, LIMIT) == {
        "pair": [1, 2],
        "3": "three",
        "null": True,
    }
    with pytest.raises(UnstorableResult, match=r"^the handler returned a set at result\.x, "):
        as_stored({"x": {1}}, LIMIT)
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(UnstorableResult, match="JSON cannot carry: Circular reference detected"):
        as_stored(loop, LIMIT)


def test_a_result_holding_text_that_is_not_unicode_is_refused_naming_where() -> None:
    """Stored, it made every answer carrying the job fail (UTF-8 cannot encode it)."""
    with pytest.raises(
        UnstorableResult,
        match=r"^the handler returned text holding an unpaired UTF-16 surrogate at "
        r"result\.rows\[1\], ",
    ):
        as_stored({"rows": ["fine", "a\ud800b"]}, LIMIT)
    with pytest.raises(UnstorableResult, match=r"surrogate at result\.\\udc00, "):
        as_stored({"\udc00": 1}, LIMIT)
    assert as_stored({"emoji": "\U0001f600", "cjk": "\u65e5"}, LIMIT) == {
        "emoji": "\U0001f600",
        "cjk": "\u65e5",
    }


def test_a_result_over_the_limit_is_refused_saying_how_large() -> None:
    """Counted as compact UTF-8 JSON, as it is stored: the limit itself passes."""
    at_limit = {"t": "x" * (LIMIT - len('{"t":""}'))}
    assert as_stored(at_limit, LIMIT) == at_limit
    over = {"t": "\u00e9" * 500}  # 1000 bytes of UTF-8, 500 characters
    with pytest.raises(
        UnstorableResult,
        match=r"^the handler returned a result of 1008 bytes of JSON; the limit is 1000 "
        r"\(MAX_RESULT_BYTES\)",
    ):
        as_stored(over, LIMIT)


class LaxInput(BaseModel):
    scale: float = 1.0


def test_input_with_a_non_finite_number_is_invalid_naming_where() -> None:
    registry = default_registry()
    registry.register("lax", input_model=LaxInput)(lambda ctx: None)
    registry.register("free")(lambda ctx: None)
    for name, job_input, loc in [
        ("free", {"x": [float("nan")]}, ("x", 0)),
        ("wait", {"seconds": float("inf")}, ("seconds",)),
        ("wait", {"seconds": 1, "ignored": float("nan")}, ("ignored",)),
        ("lax", {"scale": "inf"}, ("scale",)),  # the model made the text a number
    ]:
        with pytest.raises(InvalidJobInput) as info:
            registry.validate_input(name, job_input)
        assert info.value.errors[0]["loc"] == loc
        assert "finite number" in info.value.errors[0]["msg"]


async def test_plain_function_runs_in_a_thread() -> None:
    registry = HandlerRegistry()
    threads: list[str] = []

    @registry.register("plain")
    def plain(ctx: JobContext) -> int:
        threads.append(threading.current_thread().name)
        ctx.report_progress(150, "clamped")
        return 7

    reports: list[tuple[float, str]] = []
    ctx = JobContext("j", {}, lambda p, m: reports.append((p, m)))
    assert await registry.run("plain", ctx) == 7
    assert threads and threads[0] != threading.main_thread().name
    assert reports == [(100.0, "clamped")]


async def test_a_handler_that_tries_to_stop_the_process_raises_handler_exit() -> None:
    """Let through, SystemExit or KeyboardInterrupt from a handler stopped the replica."""
    registry = HandlerRegistry()

    @registry.register("exits")
    async def exits(ctx: JobContext) -> Any:
        raise SystemExit(3)

    @registry.register("exits_in_thread")
    def exits_in_thread(ctx: JobContext) -> Any:
        raise SystemExit("bad arguments")

    @registry.register("interrupted")
    def interrupted(ctx: JobContext) -> Any:
        raise KeyboardInterrupt

    ctx = JobContext("j", {}, lambda p, m: None)
    for name, says in [
        ("exits", "the handler called sys.exit(3), which would stop the replica; "),
        ("exits_in_thread", "the handler called sys.exit('bad arguments'), which would "),
        ("interrupted", "the handler raised KeyboardInterrupt, which would stop the replica"),
    ]:
        with pytest.raises(HandlerExit) as raised:
            await registry.run(name, ctx)
        assert str(raised.value).startswith(says)


async def test_a_plain_function_runs_in_the_threads_given() -> None:
    registry = HandlerRegistry()
    registry.register("where")(lambda ctx: threading.current_thread().name)
    threads = HandlerThreads(2)
    try:
        assert (await registry.run("where", JobContext("j", {}, print), threads)).startswith("job")
    finally:
        threads.shutdown()


async def test_a_job_that_must_wait_for_a_thread_is_told(caplog: pytest.LogCaptureFixture) -> None:
    """A plain handler's thread runs until its function returns, even once its job ended:
    with every thread taken, the next plain job waits, and the log says so."""
    registry = HandlerRegistry()
    release = threading.Event()
    registry.register("stuck")(lambda ctx: release.wait(10))
    registry.register("next")(lambda ctx: "ran")
    threads = HandlerThreads(1)
    try:
        stuck = asyncio.ensure_future(registry.run("stuck", JobContext("j1", {}, print), threads))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(registry.run("next", JobContext("j2", {}, print), threads))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        assert "job j2 waits for a thread: all 1 of JOB_THREADS run plain handlers" in caplog.text
        release.set()
        assert await asyncio.wait_for(waiting, 5) == "ran"
        assert await stuck is True
        assert not threads.full
    finally:
        threads.shutdown()


def test_a_progress_message_is_stored_as_text() -> None:
    """Whatever a handler passes as the message, the job stores text (JSON can carry it)."""
    reports: list[tuple[float, str]] = []
    ctx = JobContext("j", {}, lambda p, m: reports.append((p, m)))
    ctx.report_progress(float("nan"), date(2026, 1, 2))  # type: ignore[arg-type]
    ctx.report_progress(-5, 3)  # type: ignore[arg-type]
    assert reports == [(0.0, "2026-01-02"), (0.0, "3")]


def test_a_handlers_message_is_stored_as_unicode_and_cut_when_long() -> None:
    """An unpaired surrogate (not Unicode: no answer could carry it) becomes U+FFFD, as Go's
    JSON reading makes it; a message past MESSAGE_CHARS is cut, saying how much went."""
    assert stored_text("half \ud83d of a pair") == "half \ufffd of a pair"
    assert stored_text("x" * MESSAGE_CHARS) == "x" * MESSAGE_CHARS
    cut = stored_text("y" * (MESSAGE_CHARS + 7))
    assert cut == "y" * MESSAGE_CHARS + "... (7 more characters cut)"
    reports: list[tuple[float, str]] = []
    ctx = JobContext("j", {}, lambda p, m: reports.append((p, m)))
    ctx.report_progress(10, "z" * (MESSAGE_CHARS + 1) + "\udfff")
    assert reports == [(10.0, "z" * MESSAGE_CHARS + "... (2 more characters cut)")]


async def test_wait_handler_reports_progress_and_can_fail() -> None:
    registry = default_registry()
    reports: list[tuple[float, str]] = []
    ctx = JobContext("j", {"seconds": 0.2}, lambda p, m: reports.append((p, m)))
    assert await registry.run("wait", ctx) == {"waitedSeconds": 0.2}
    assert reports[-1][0] == 100.0
    failing = JobContext("j", {"seconds": 0, "fail": True}, lambda p, m: None)
    with pytest.raises(JobFailure, match="fail=true"):
        await registry.run("wait", failing)


def test_context_cancel_flag() -> None:
    ctx = JobContext("j", {}, lambda p, m: None)
    assert not ctx.cancelled
    ctx.cancel()
    assert ctx.cancelled


def test_job_handlers_add_the_users_job_types_to_the_built_in_ones() -> None:
    registry = load_registry(["tests.job_orchestrator.sample_jobs:jobs"])
    assert registry.names == [
        "blob",
        "cli",
        "consume",
        "echo",
        "hog",
        "meet",
        "shout",
        "stamp",
        "wait",
    ]
    assert registry.validate_input("shout", {"text": "hi"}) == {"text": "hi"}
    with pytest.raises(InvalidJobInput):
        registry.validate_input("shout", {"text": 3})


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("tests.job_orchestrator.sample_jobs", "expected module:attribute"),
        ("no_such_module_here:jobs", "cannot import no_such_module_here"),
        ("tests.job_orchestrator.sample_jobs:missing", "sample_jobs.missing is nothing"),
        ("tests.job_orchestrator.sample_jobs:not_a_registry", "is str, not a HandlerRegistry"),
    ],
)
def test_a_job_handlers_entry_that_cannot_be_used_says_why(spec: str, why: str) -> None:
    with pytest.raises(HandlerModuleError, match=why):
        load_registry([spec])


def test_a_job_type_registered_twice_is_refused() -> None:
    twice = ["tests.job_orchestrator.sample_jobs:jobs"] * 2
    with pytest.raises(
        HandlerModuleError, match="registered twice: blob, cli, consume, echo, hog, "
    ):
        load_registry(twice)
    builtin = HandlerRegistry()
    builtin.register("wait")(lambda ctx: None)
    with pytest.raises(ValueError, match="registered twice: wait"):
        default_registry().include(builtin)
