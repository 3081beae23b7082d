"""The sidecar's log lines in daprd's shape: logrus text (``--log-as-json``: one JSON object).

``time="..." level=info msg="..." app_id=... scope=...``, fields sorted by name as logrus sorts
them, a value quoted (Go's ``%q``) only when it holds more than letters, digits and ``-._/@^+``.
A record's extra fields (``extra={"fields": {...}}``) join the line, as daprd's WithFields.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from sidecar.gofmt import go_quote

LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}
_PLAIN = re.compile(r"[A-Za-z0-9\-._/@^+]+")
#: What Go's encoding/json escapes in strings beyond Python's json (logrus keeps its default
#: HTML escaping); these characters only ever occur inside strings of a JSON text.
_GO_JSON_ESCAPES = str.maketrans(
    {c: f"\\u{ord(c):04x}" for c in ("<", ">", "&", "\u2028", "\u2029")}
)


def _text(value: Any) -> str:
    text = str(value)
    return text if _PLAIN.fullmatch(text) else go_quote(text)


class DaprdFormatter(logging.Formatter):
    def __init__(self, app_id: str, *, as_json: bool = False) -> None:
        super().__init__()
        self.app_id = app_id
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z")
        fields: dict[str, Any] = {
            "app_id": self.app_id,
            "scope": record.name,
            "type": "log",
            **getattr(record, "fields", {}),
        }
        message = record.getMessage()
        trace = self.formatException(record.exc_info) if record.exc_info else ""
        level = LEVELS.get(record.levelno, record.levelname.lower())
        if self.as_json:
            line = {"time": moment, "level": level, "msg": message, **fields}
            if trace:
                line["error"] = trace
            text = json.dumps(line, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            return text.translate(_GO_JSON_ESCAPES)
        head = f"time={_text(moment)} level={level} msg={_text(message)}"
        text = " ".join([head, *(f"{k}={_text(v)}" for k, v in sorted(fields.items()))])
        # A traceback stays readable below its line rather than escaped into it.
        return f"{text}\n{trace}" if trace else text
