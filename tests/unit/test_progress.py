"""Live progress: events from any process, a line per phase change, and an ETA from the host's own pace."""

from __future__ import annotations

from harness.progress import ProgressBoard, ProgressEvent, ProgressLog, ProgressPrinter


def test_eta_follows_the_hosts_pace():
    board = ProgressBoard()
    board.update(ProgressEvent(100.0, "h", "booting"))
    board.update(ProgressEvent(110.0, "h", "scenario", "img/a", 1, 11))
    line = board.update(ProgressEvent(120.0, "h", "scenario", "img/b", 2, 11))
    # 10 s per scenario, 10 left counting the one just started
    assert line.endswith("h: scenario 2 of 11: img/b  (ETA 1m40s)")
    assert "ETA" not in ProgressBoard().update(ProgressEvent(1.0, "x", "loading", "image base"))


def test_printer_shows_every_event_once_in_order(tmp_path):
    path = tmp_path / "progress.jsonl"
    ProgressLog(path).emit("old", "booting")  # an earlier run's line is not shown
    lines: list[str] = []
    printer = ProgressPrinter(path, lines.append, interval=0.01)
    printer.start()
    log = ProgressLog(path)
    log.emit("h1", "building", "host")
    log.emit("h1", "loading", "image base")
    printer.stop()
    assert [line.split("] ", 1)[1] for line in lines] == ["h1: building host", "h1: loading image base"]
