"""The method of a service invocation, as daprd 1.18 reads and normalizes it.

Over HTTP the method comes from the decoded request path (``%2F`` is a slash) and is cleaned
like Go's ``path.Clean``; every invocation, HTTP or gRPC, then goes through daprd's
``NormalizeMethod`` (pkg/messaging/method/normalize.go): ``#``, ``?``, NUL and control
characters are refused, and ``..`` cannot climb above the app's root. So the target app gets
the same path whatever escapes or traversal the caller used.
"""

from __future__ import annotations

import binascii
from urllib.parse import unquote_plus

from sidecar.gofmt import go_quote
from sidecar.http_paths import go_path_clean

_INVOKE_PREFIX = ("v1.0", "invoke")
_METHOD_MARK = "/method/"
_APP_ID_USER = "dapr-app-id"


class InvalidMethod(ValueError):
    """daprd's message for a method it refuses (the invocation fails with InvalidArgument)."""


def http_target_and_method(
    path: str, app_id_header: str, authorization: str = ""
) -> tuple[str, str]:
    """The target app and method of an HTTP invocation, from the decoded request path.

    As daprd's findTargetIDAndMethod, in its order: a ``dapr-app-id`` header, then Basic
    credentials ``dapr-app-id:<app>`` (``http://dapr-app-id:<app>@host/<method>``), and for
    both the whole path is the method; else ``/v1.0/invoke/<id>/method/<method>``. An empty
    target means the request names no app.
    """
    named = app_id_header or basic_auth_app_id(authorization)
    if named is not None:
        return named, go_path_clean(path).removeprefix("/")
    start = _after_prefix(path, _INVOKE_PREFIX)
    if start <= 0:
        return "", ""
    target, mark, method = path[start:].partition(_METHOD_MARK)
    if not mark or not target:
        return "", ""
    cleaned = go_path_clean(method)
    # daprd unescapes the target once more (url.QueryUnescape), keeping it if that fails.
    return unquote_plus(target) or target, "" if cleaned == "." else cleaned


def basic_auth_app_id(authorization: str) -> str | None:
    """The app named by ``Authorization: Basic`` credentials whose user is ``dapr-app-id``
    (any case), or None: daprd decodes them with Go's standard base64 and wants exactly one
    colon."""
    if not authorization.startswith("Basic "):
        return None
    encoded = authorization.removeprefix("Basic ")
    # Go's StdEncoding wants whole quads and at most two '=' at the very end; Python's strict
    # mode alone lets extra padding after a whole quad through.
    padding = len(encoded) - len(encoded.rstrip("="))
    if len(encoded) % 4 or padding > 2:
        return None
    try:
        decoded = binascii.a2b_base64(encoded, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    pair = decoded.decode("utf-8", "replace").split(":")
    if len(pair) != 2 or pair[0].lower() != _APP_ID_USER:
        return None
    return pair[1]


def _after_prefix(path: str, parts: tuple[str, ...]) -> int:
    """daprd's pathHasPrefix: where ``path`` goes on after the segments ``parts`` (any number
    of slashes between them), or -1."""
    found = start = 0
    for i, char in enumerate(path):
        if char != "/":
            if found >= len(parts):
                return i
            continue
        if i > start:
            if path[start:i] != parts[found]:
                return -1
            found += 1
        start = i + 1
    return len(path) if found >= len(parts) else -1


def normalize_method(method: str) -> str:
    """daprd's NormalizeMethod; raises InvalidMethod with its message."""
    if any(c in method for c in "#?\x00"):
        raise InvalidMethod(f"method contains forbidden character: {go_quote(method)}")
    position = 0
    for char in method:
        if char < " " or char == "\x7f":
            raise InvalidMethod(
                f"method contains control character at position {position}: {go_quote(method)}"
            )
        position += len(char.encode("utf-8", "surrogatepass"))
    cleaned = go_path_clean(method)
    while cleaned.startswith("../"):
        cleaned = cleaned[3:]
    return "" if cleaned in ("..", ".") else cleaned
