"""Progress of long commands, on stderr: a tqdm bar with an ETA on a terminal, else a line every ~10 %.

The one implementation behind ``datagen build`` (images), ``datagen fetch`` (bytes), ``bench run``
(tasks) and ``bench train`` (samples of an epoch).  ``bar=None`` draws the bar when stderr is a
terminal; the commands' ``--progress`` / ``--no-progress`` force the bar or the lines.  A line
(amounts of bytes in MB; a note such as the loss after the percentage) reads::

    epoch 2/8  40% loss 0.4120 acc 0.8100 (4000/10000 samples, 9.6 s, 417 samples/s, eta 14 s)

and goes to the caller's ``log``, which adds its prefix (``datagen:``).  Standard library only until
a bar is drawn (tqdm is imported then; without it the lines are used).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

__all__ = ["Progress", "add_progress_flags", "duration"]


def duration(seconds: float) -> str:
    """``3.2 s``, ``95 s``, ``12.5 min`` or ``3.1 h``: a time span for a log line."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 6000:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _columns() -> int:
    """The width of the terminal on stderr (0: unknown)."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


class Progress:
    """Progress towards ``total`` items of ``unit`` (``"B"``: bytes, shown in MB in lines).

    Parameters
    ----------
    total : int
        Items to do, ``initial`` included.
    log : callable, keyword-only
        Receives the lines (not used by the bar).
    unit : str, keyword-only
        Plural name of an item (``images``, ``tasks``, ``samples``) or ``"B"``.
    desc : str, keyword-only
        What progresses (``build``, ``epoch 2/8``, an archive's name); starts the bar and each line.
    bar : bool or None, keyword-only
        True: a tqdm bar on stderr; False: lines; None: a bar when stderr is a terminal.
    initial : int, keyword-only
        Items already done before this process (a resumed download): not counted in the rate.

    Call :meth:`close` at the end, also on errors (it removes the bar).
    """

    def __init__(self, total: int, *, log: Callable[[str], None], unit: str = "items", desc: str = "",
                 bar: bool | None = None, initial: int = 0):
        self.total, self.done, self.initial = max(int(total), 0), int(initial), int(initial)
        self.log, self.unit, self.desc, self.note = log, unit, desc, ""
        self.t0 = time.perf_counter()
        self.next_pct = (100 * self.done // max(self.total, 1)) // 10 * 10 + 10
        self.bar = None
        if sys.stderr.isatty() if bar is None else bar:
            try:
                from tqdm import tqdm
            except ImportError:   # a bare machine without tqdm: lines
                return
            scale = {"unit": "B", "unit_scale": True, "unit_divisor": 1000} if unit == "B" else {"unit": unit}
            # a terminal that reports no size (a bare pty) would get no bar at all from tqdm
            width = {"dynamic_ncols": True} if _columns() > 0 else {"ncols": 100, "nrows": 24}
            self.bar = tqdm(total=self.total, initial=self.done, desc=desc or None, file=sys.stderr, leave=False,
                            **width, **scale)

    def update(self, n: int = 1, *, note: str = "") -> None:
        """``n`` more items done; ``note`` (e.g. ``loss 0.1234 acc 0.5000``) is shown until the next one."""
        self.done += int(n)
        self.note = note or self.note
        if self.bar is not None:
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(n)
            return
        pct = 100 * self.done // max(self.total, 1)
        if pct >= self.next_pct:
            self.log(self.line())
            self.next_pct = (pct // 10 + 1) * 10

    def line(self) -> str:
        """The progress as one line: percent, the last note, amounts, elapsed time, rate and ETA."""
        elapsed = time.perf_counter() - self.t0
        rate = (self.done - self.initial) / max(elapsed, 1e-9)
        pct = 100 * self.done // max(self.total, 1)
        if self.unit == "B":
            amounts, speed = f"{self.done / 1e6:.0f}/{self.total / 1e6:.0f} MB", f"{rate / 1e6:.3g} MB/s"
        else:
            amounts = f"{self.done}/{self.total} {self.unit}"
            speed = f"{rate:.3g} {self.unit}/s" if rate >= 1 else f"{60 * rate:.3g} {self.unit}/min"
        eta = f"eta {duration(max(self.total - self.done, 0) / rate)}" if rate > 0 else "eta ?"
        head = f"{self.desc} " if self.desc else ""
        note = f" {self.note}" if self.note else ""
        return f"{head}{pct:3d}%{note} ({amounts}, {duration(elapsed)}, {speed}, {eta})"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def add_progress_flags(parser: argparse.ArgumentParser) -> None:
    """``--progress`` (a bar) / ``--no-progress`` (lines) into ``args.progress``; default None: a bar on a terminal."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="a progress bar on stderr (default when stderr is a terminal)")
    group.add_argument("--no-progress", dest="progress", action="store_false",
                       help="a progress line every ~10 %% instead of a bar")
