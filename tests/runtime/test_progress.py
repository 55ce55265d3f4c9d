"""Progress bars: live in a terminal, sparse in a log file, off on request."""

import io
import time

import pytest

from transfer_lab.runtime import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(stream, n=100, pause=0.01):
    with progress.progress_bar(total=n, file=stream, desc="work") as bar:
        for i in range(n):
            time.sleep(pause)
            bar.set_postfix(loss=f"{1 / (i + 1):.3f}")  # as a training loop does every batch
            bar.update(1)
    return stream.getvalue().count("\r")


def test_a_log_file_gets_few_updates_a_terminal_many(monkeypatch):
    monkeypatch.delenv("TRANSFER_LAB_PROGRESS", raising=False)
    monkeypatch.setenv("TRANSFER_LAB_PROGRESS_INTERVAL", "10")
    in_log = _run(io.StringIO())
    in_terminal = _run(Terminal())
    assert in_log <= 3  # the first and the last refresh, nothing per batch
    assert in_terminal > 3 * in_log


def test_bars_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("TRANSFER_LAB_PROGRESS", "0")
    assert _run(Terminal(), n=20, pause=0) == 0


def test_a_bad_interval_names_the_variable(monkeypatch):
    monkeypatch.setenv("TRANSFER_LAB_PROGRESS_INTERVAL", "often")
    with pytest.raises(ValueError, match="TRANSFER_LAB_PROGRESS_INTERVAL"):
        progress.progress_bar(total=1, file=io.StringIO())
