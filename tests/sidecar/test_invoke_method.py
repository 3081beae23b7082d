"""The invocation method as daprd reads it: Go's path.Clean, pathHasPrefix, NormalizeMethod."""

from __future__ import annotations

import pytest

from sidecar.gofmt import go_quote
from sidecar.http_paths import go_path_clean
from sidecar.invoke_method import (
    InvalidMethod,
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
