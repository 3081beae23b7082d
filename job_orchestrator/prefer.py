"""RFC 7240 ``Prefer`` header parsing (``wait=N``, ``respond-async``) for the job POST."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Preferences:
    wait: float | None = None  #: seconds the client is willing to wait, if it said
    respond_async: bool = False

    def applied(self, waited: float | None, *, answered_async: bool) -> str:
        """The ``Preference-Applied`` value for what the server honoured.

        Only a 202 honours ``respond-async`` (RFC 7240 §4.1): a 200 with the final job did not,
        and the header names only preferences that were (§3).
        """
        parts = []
        if self.respond_async and answered_async:
            parts.append("respond-async")
        if waited is not None and self.wait is not None:
            parts.append(f"wait={_fmt(waited)}")
        return ", ".join(parts)


def _fmt(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def parse_prefer(headers: Iterable[str]) -> Preferences:
    """Read every ``Prefer`` header; unknown or malformed preferences are ignored (RFC 7240 §2)."""
    wait: float | None = None
    respond_async = False
    for header in headers:
        for item in header.split(","):
            token, _, value = item.split(";")[0].strip().partition("=")
            name = token.strip().lower()
            value = value.strip().strip('"')
            if name == "respond-async":
                respond_async = True
            elif name == "wait" and wait is None:
                try:
                    parsed = float(value)
                except ValueError:
                    continue
                if parsed >= 0:
                    wait = parsed
    return Preferences(wait=wait, respond_async=respond_async)
