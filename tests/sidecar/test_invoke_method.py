"""The invocation method as daprd reads it: Go's path.Clean, pathHasPrefix, NormalizeMethod."""

from __future__ import annotations

import base64

import pytest

from sidecar.gofmt import go_quote
from sidecar.http_paths import go_path_clean
from sidecar.invoke_method import (
    InvalidMethod,
    basic_auth_app_id,
    http_target_and_method,
    normalize_method,
)


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("", "."),
        ("//a//b/", "/a/b"),  # POSIX normpath would keep the two leading slashes
        ("/../a", "/a"),
        ("a/../..", ".."),
        ("./a/./b/.", "a/b"),
        ("/", "/"),
    ],
)
def test_go_path_clean(path: str, cleaned: str) -> None:
    assert go_path_clean(path) == cleaned


def test_target_and_method_from_the_decoded_path() -> None:
    assert http_target_and_method("/v1.0/invoke/app/method/a/b/", "") == ("app", "a/b")
    assert http_target_and_method("//v1.0//invoke//app/method/x", "") == ("app", "x")
    assert http_target_and_method("/v1.0/invoke/my+app/method/", "") == ("my app", "")
    assert http_target_and_method("/v1.0/invoke/app/x", "") == ("", "")
    assert http_target_and_method("/v1.00/invoke/app/method/x", "") == ("", "")
    # The header wins, and then the whole path is the method.
    assert http_target_and_method("/v1.0/invoke/app/method/x", "other") == (
        "other",
        "v1.0/invoke/app/method/x",
    )


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def test_target_from_basic_credentials_wins_over_the_path_not_the_header() -> None:
    """daprd's findTargetIDAndMethod: header, then ``dapr-app-id:<app>`` Basic credentials."""
    assert http_target_and_method("/a/./b", "", basic("dapr-app-id:app")) == ("app", "a/b")
    assert http_target_and_method("/v1.0/invoke/x/method/m", "", basic("Dapr-App-Id:app")) == (
        "app",
        "v1.0/invoke/x/method/m",
    )
    assert http_target_and_method("/m", "header", basic("dapr-app-id:app")) == ("header", "m")
    # Other credentials leave the path to name the app.
    assert http_target_and_method("/v1.0/invoke/x/method/m", "", basic("user:pw")) == ("x", "m")
    # Empty credentials name no app (404 in daprd), rather than falling back to the path.
    assert http_target_and_method("/v1.0/invoke/x/method/m", "", basic("dapr-app-id:")) == (
        "",
        "v1.0/invoke/x/method/m",
    )


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer abc",
        "basic " + base64.b64encode(b"dapr-app-id:app").decode(),  # Go's prefix check is exact
        # Padding Go's StdEncoding refuses: after a whole quad, too much, missing.
        "Basic ZGFwci1hcHAtaWQ6YXBw=",
        "Basic ZGFwci1hcHAtaWQ6YXBwYQ===",
        "Basic ZGFwci1hcHAtaWQ6YXBwYQ",
        "Basic !!!!",
        basic("dapr-app-id:a:b"),  # a second colon: not a pair
        basic("dapr-app-idx:app"),
    ],
)
def test_basic_credentials_that_name_no_app(authorization: str) -> None:
    assert basic_auth_app_id(authorization) is None


def test_normalize_method() -> None:
    assert normalize_method("../../a/./b") == "a/b"
    assert normalize_method("..") == ""
    assert normalize_method("/a/") == "/a"
    with pytest.raises(InvalidMethod, match=r'forbidden character: "a\\x00"'):
        normalize_method("a\x00")
    with pytest.raises(InvalidMethod, match="control character at position 3"):
        normalize_method("éa\x7f")  # é is two bytes in Go's string


def test_go_quote() -> None:
    assert go_quote('a"b\\c\n\x01é\u200b\U0001f600') == '"a\\"b\\\\c\\n\\x01é\\u200b\U0001f600"'
