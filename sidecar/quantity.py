"""Kubernetes resource quantities (``4Mi``, ``16Ki``, ``1e6``), as daprd's size flags take them.

daprd parses ``--max-body-size`` and ``--read-buffer-size`` with apimachinery's
``resource.ParseQuantity`` and keeps the value only if it is a whole number of bytes
(cmd/daprd/options getQuantityBytes).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

#: apimachinery's own pattern, quoted in its format error.
_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_SUFFIXES = {
    **{s: Decimal(1024) ** n for n, s in enumerate(("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(10) ** n for n, s in ((-9, "n"), (-6, "u"), (-3, "m"), (3, "k"), (6, "M"))},
    **{s: Decimal(10) ** n for n, s in ((9, "G"), (12, "T"), (15, "P"), (18, "E"))},
}
_EXPONENT = re.compile(r"[eE]([-+]?[0-9]+)")


class QuantityError(ValueError):
    pass


def parse_bytes(text: str) -> int:
    """The whole number of bytes ``text`` stands for; QuantityError with daprd's reason."""
    # fullmatch: Python's `$` would also match before a trailing newline, which Go refuses.
    match = re.fullmatch(_PATTERN, text)
    if match is None:
        raise QuantityError(f"quantities must match the regular expression '{_PATTERN}'")
    number, suffix = match.groups()
    if number.count(".") > 1 or number.strip("+-") in ("", "."):
        raise QuantityError(f"quantities must match the regular expression '{_PATTERN}'")
    if suffix in _SUFFIXES:
        scale = _SUFFIXES[suffix]
    elif exponent := _EXPONENT.fullmatch(suffix):
        scale = Decimal(10) ** int(exponent.group(1))
    else:
        raise QuantityError("unable to parse quantity's suffix")
    try:
        value = Decimal(number) * scale
    except InvalidOperation:
        raise QuantityError(f"quantities must match the regular expression '{_PATTERN}'") from None
    if value != value.to_integral_value() or abs(value) >= 2**63:
        raise QuantityError(f"cannot get bytes from resource quantity value '{text}'")
    return int(value)
