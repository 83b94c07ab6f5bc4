"""Progress of a long cell: the estimate of time left and how a line is drawn on a terminal and off one."""

from __future__ import annotations

from pytest_longeff.cell.progress import Progress, describe


class FakeTerminal:
    """Records what progress writes, as pytest's terminal reporter would receive it."""

    def __init__(self, isatty: bool = True) -> None:
        self.isatty = isatty
        self.out: list[str] = []

    def write(self, content: str, *, flush: bool = False) -> None:
        self.out.append(content)

    def write_line(self, line: str) -> None:
        self.out.append(line + "\n")

    def ensure_newline(self) -> None:
        self.out.append("<newline>")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_describe_estimates_the_time_left() -> None:
    assert describe("led-base-1024-qasper", 10, 40, 30.0) == \
        "led-base-1024-qasper: step 10/40, 30s elapsed, ~1m30s left"
    assert describe("x", 3, None, 4000.0) == "x: step 3, 1h06m elapsed"


def test_tty_rewrites_one_line_at_most_twice_a_second_and_erases_it() -> None:
    term, clock = FakeTerminal(), Clock()
    progress = Progress(term, tty=True, clock=clock)
    progress.start("cell")
    for step in range(1, 41):
        clock.now += 0.1
        progress(step, 40, clock.now)
    writes = [w for w in term.out if w.startswith("\r") and w.strip()]
    assert term.out[0] == "<newline>" and 7 <= len(writes) <= 8  # 4 s, at most 2 per second
    assert writes[0] == "\rcell: step 5/40, 0s elapsed, ~4s left" and all("/40, " in w for w in writes)
    progress.finish()
    assert term.out[-1].strip() == "" and term.out[-1].startswith("\r") and term.out[-1].endswith("\r")


def test_without_a_tty_a_plain_line_every_interval() -> None:
    term, clock = FakeTerminal(isatty=False), Clock()
    progress = Progress(term, tty=False, clock=clock, line_interval_s=30)
    progress.start("cell")
    for step in range(1, 101):
        clock.now += 1.0
        progress(step, None, clock.now)
    progress.finish()
    expected = ((30, "30s"), (60, "1m00s"), (90, "1m30s"))
    assert term.out == [f"longeff: cell: step {s}, {t} elapsed\n" for s, t in expected]

