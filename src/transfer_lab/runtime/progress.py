"""Progress bars for long work: live in a terminal, a line every few seconds in a log file.

Every bar of the project comes from :func:`progress_bar`, so one place decides how they look. Outside a
terminal (a log file, CI, ``kedro run > run.log``) tqdm would write an update per batch; there the bar
refreshes at most every ``TRANSFER_LAB_PROGRESS_INTERVAL`` seconds (default 10).
``TRANSFER_LAB_PROGRESS=0`` turns the bars off.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable

#: Seconds between two refreshes of a bar that does not write to a terminal.
LOG_INTERVAL = 10.0


def interactive(stream: Any = None) -> bool:
    """Whether ``stream`` (stderr by default) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def log_interval() -> float:
    raw = os.environ.get("TRANSFER_LAB_PROGRESS_INTERVAL")
    if raw is None:
        return LOG_INTERVAL
    try:
        return max(float(raw), 0.0)
    except ValueError:
        raise ValueError(f"TRANSFER_LAB_PROGRESS_INTERVAL={raw!r} is not a number of seconds: "
                         "set it to e.g. 10, or unset it.") from None


def progress_bar(iterable: Iterable | None = None, **kwargs: Any):
    """A tqdm bar (``tqdm.auto``: a widget in Jupyter) with the project's defaults. Outside a
    terminal, ``set_postfix`` does not force a refresh either (tqdm's default would write a line
    each time: the per-batch losses of a training loop)."""
    if os.environ.get("TRANSFER_LAB_PROGRESS") == "0":
        kwargs["disable"] = True
    live = interactive(kwargs.get("file"))
    if not live:
        kwargs.setdefault("mininterval", log_interval())
        kwargs.setdefault("maxinterval", max(log_interval() * 6, 60.0))
    kwargs.setdefault("dynamic_ncols", True)
    bar = _bar_class()(iterable, **kwargs)
    bar.live = live
    return bar


_BAR: Any = None


def _bar_class() -> Any:
    global _BAR
    if _BAR is None:
        from tqdm.auto import tqdm

        class Bar(tqdm):  # type: ignore[misc, valid-type]
            live = True

            def set_postfix(self, ordered_dict=None, refresh=None, **kwargs):
                super().set_postfix(ordered_dict, refresh=self.live if refresh is None else refresh, **kwargs)

        _BAR = Bar
    return _BAR
