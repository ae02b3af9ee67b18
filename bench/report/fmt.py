"""Formatting helpers of the report: numbers as text, pandas scalars as Python, names as anchors.

All functions return plain ``str``; escaping is the templates' job (autoescape is on), so nothing
here builds HTML.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

DASH = "—"


def isnum(value: Any) -> bool:
    """A finite real number (not a bool, not a string)."""
    try:
        return value is not None and not isinstance(value, (str, bool)) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fmt(value: Any, digits: int = 4) -> str:
    """A number in ``digits`` significant digits (scientific outside [1e-3, 1e6)); ``—`` for no number."""
    if not isnum(value):
        return DASH
    v = float(value)
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e6:
        return f"{v:.{digits}g}"
    return f"{v:.{max(digits - 1, 1)}e}"


def fmt_signed(value: Any) -> str:
    """:func:`fmt` with an explicit sign (``+0.1``, ``-0.1``)."""
    text = fmt(value)
    return text if text == DASH or text.startswith("-") else f"+{text}"


def slug(*parts: Any) -> str:
    """An id fragment made of ``[a-z0-9_-]`` from any names."""
    text = "-".join(str(p) for p in parts)
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-").lower() or "x"


def clean(value: Any) -> Any:
    """pandas/NumPy scalars to plain Python; NaN/None to None."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def text(value: Any) -> str:
    """A cell's text: ``""`` for None/NaN, else ``str``."""
    value = clean(value)
    return "" if value is None else str(value)


def parse_extras(raw: Any) -> dict:
    """The ``extras`` JSON of a summary row as a dict (``{}`` when absent or malformed)."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def ordered(preferred: Iterable[str], seen: Iterable[Any]) -> list[str]:
    """``preferred`` order first (only those in ``seen``), then the rest of ``seen`` sorted."""
    seen_set = {str(s) for s in seen if s is not None and not (isinstance(s, float) and math.isnan(s))}
    out = [p for p in preferred if p in seen_set]
    return out + sorted(seen_set - set(out))


def listish(value: Any) -> str:
    """A list as ``a, b``; None as ``""``."""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


def direction(higher_is_better: bool | None) -> tuple[str, str]:
    """``(arrow, words)`` for a metric's direction."""
    return {True: ("↑", "higher is better"), False: ("↓", "lower is better"), None: ("", "no direction")}[
        None if higher_is_better is None else bool(higher_is_better)]
