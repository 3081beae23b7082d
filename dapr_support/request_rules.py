"""How both services read a request the same way: the JSON body's media type and the
``Idempotency-Key`` header. Raised problems are FastAPI's own validation errors, so each
service's handler answers them as its other 422s."""

from __future__ import annotations

import email.message
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError

IDEMPOTENCY_KEY = "Idempotency-Key"
#: Longest key accepted (the header's ``max_length``).
MAX_IDEMPOTENCY_KEY = 200


def reads_as_json(content_type: str | None) -> bool:
    """Whether FastAPI parses a body of this Content-Type as JSON (application/json or
    application/*+json, parameters allowed): the same test as ``fastapi.routing``."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def not_json_detail(errors: Sequence[Any], content_type: str | None) -> str | None:
    """The 415 detail when a body was refused only because it was not sent as JSON (FastAPI
    leaves such a body unparsed and reports that it is no object, which names no real
    mistake); None when the refusal is a real 422."""
    if reads_as_json(content_type):
        return None
    if not any(tuple(err.get("loc", ())) == ("body",) for err in errors):
        return None
    sent = repr(content_type) if content_type else "no Content-Type"
    return f"send the body as application/json (it came with {sent})"


def json_syntax_message(error: Mapping[str, Any]) -> str | None:
    """What a validation error says when the body is no JSON at all (FastAPI's
    ``json_invalid``, whose ``loc`` is ``("body", <character offset>)``): where it broke."""
    if error.get("type") != "json_invalid":
        return None
    where = error.get("loc", ())[-1]
    reason = (error.get("ctx") or {}).get("error") or error.get("msg", "")
    return f"the body is not valid JSON ({reason} at character {where})"


def idempotency_key(values: Sequence[str]) -> str | None:
    """The key in the request's ``Idempotency-Key`` headers (``values``, all of them), without
    the spaces around it: an HTTP field value has none, so ``"k "`` and ``"k"`` are one key.
    A 422 for several (which one counted would be chance) or a blank one (one key shared by
    every client sending it)."""
    if not values:
        return None
    key = values[0].strip(" \t")
    problem = None
    if len(values) > 1:
        problem = f"Send one {IDEMPOTENCY_KEY}, not several"
    elif not key:
        problem = f"The {IDEMPOTENCY_KEY} must not be blank"
    if problem is not None:
        loc = ("header", IDEMPOTENCY_KEY)
        raise RequestValidationError([{"loc": loc, "msg": problem, "type": "value_error"}])
    return key
