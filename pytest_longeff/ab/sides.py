"""The two sides' processes: where each environment is, and an execnet gateway per side that runs
:func:`pytest_longeff.ab.side.serve` under the side's own interpreter, in its own directory."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_longeff.ab.side import PROTOCOL


class SideError(Exception):
    """A side could not start or answered a command with an error; ``sides``: which ("base", "head"; empty when
    the job itself refused)."""

    def __init__(self, message: str, sides: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.sides = sides


@dataclass(frozen=True)
class Env:
    """A side's environment: its interpreter and the directory its pytest runs in."""

    name: str
    python: str
    directory: str

    @classmethod
    def parse(cls, name: str, spec: str) -> Env:
        """``spec``: a directory (a checkout; its ``.venv/bin/python`` when it has one, else this interpreter) or a
        Python interpreter (run in the current directory). ValueError says what was given and what is accepted."""
        path = Path(spec).expanduser()
        if path.is_dir():
            venv = path / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
            return cls(name, str(venv.absolute() if venv.exists() else sys.executable), str(path.absolute()))
        if path.is_file() and os.access(path, os.X_OK):
            return cls(name, str(path.absolute()), os.getcwd())
        raise ValueError(f"--{name} {spec!r}: neither a directory (a checkout, with its .venv if it has one) nor an "
                         "executable Python interpreter")

    def describe(self) -> dict[str, str]:
        """For the report."""
        return {"python": self.python, "directory": self.directory}


#: The glibc tunable both sides' processes start with: glibc's malloc puts its heap on transparent huge pages (takes
#: effect with glibc 2.35 or later and the kernel's THP mode ``madvise`` or ``always``; otherwise ignored). With 4 KiB
#: pages two processes running the same code on the same core differed here for as long as they lived (likely through
#: the physical pages their heaps got, and so the cache sets they share): on a shared 2-core CPU the LED 1024-token
#: cell's spread between process pairs fell from 0.078 to 0.036 (training) and from 0.094 to 0.052 (inference) with
#: huge pages, medians of 4 alternating A/A jobs each (``benchmarks/ab_noise.py``; a fixed address layout and hash
#: seed did not lower it; docs/validation/ab-replay.md). glibc reads it when the process starts, so it is in the
#: environment the process is started with, not set after (as execnet's ``//env:`` does).
HUGE_PAGES = "glibc.malloc.hugetlb=1"


def side_environment() -> dict[str, str]:
    """What a side's start adds to this environment: :data:`HUGE_PAGES` as ``GLIBC_TUNABLES``, appended to one set
    here for other tunables, nothing where the one set here names the huge-page tunable itself."""
    own = os.environ.get("GLIBC_TUNABLES")
    if own and "glibc.malloc.hugetlb" in own:
        return {}
    return {"GLIBC_TUNABLES": f"{own}:{HUGE_PAGES}" if own else HUGE_PAGES}


@contextlib.contextmanager
def _started_with(env: dict[str, str]) -> Iterator[None]:
    """This process's environment with ``env`` added while a child process is started (a child inherits the
    environment it is started with), as it was after. For the main thread of ``ab``, which starts the sides one at a
    time; not re-entrant."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Side:
    """One side's process, spoken to over an execnet channel: :meth:`send` then :meth:`receive` (so both sides can
    work at the same time), or :meth:`call` for both in one."""

    def __init__(self, env: Env) -> None:
        import execnet

        self.env = env
        spec = f"popen//python={env.python}//chdir={env.directory}"
        # A group of its own, so that closing this side ends and reaps its process (execnet's default group does
        # that only when this interpreter exits: until then every earlier pair's process stays a zombie, and one
        # slow to exit would overlap the next pair's windows).
        self.group = execnet.Group()
        self._asked = False  # `close` sent, its answer not yet read
        try:
            with _started_with(side_environment()):
                self.gateway = self.group.makegateway(spec)
            self.channel = self.gateway.remote_exec("from pytest_longeff.ab.side import serve\nserve(channel)")
            self.send("hello")
            self.hello = self.receive()
        except (OSError, EOFError, execnet.gateway_base.RemoteError, execnet.HostNotFound, SideError) as exc:
            self.close()
            raise SideError(f"the {env.name} side ({env.python} in {env.directory}) could not start: "
                            f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}; it "
                            "needs pytest-longeff with `ab` support installed in that interpreter") from None
        if self.hello.get("protocol") != PROTOCOL:
            self.close()
            raise SideError(f"the {env.name} side speaks A/B protocol {self.hello.get('protocol')}, this command "
                            f"{PROTOCOL}: install the same pytest-longeff version on both sides")

    def send(self, op: str, **args: Any) -> None:
        """Send one command."""
        self.channel.send({"op": op, **args})

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The answer to the last command sent; SideError when it is an error or the process is gone."""
        import execnet

        try:
            answer = self.channel.receive(timeout)
        except (EOFError, OSError, execnet.gateway_base.RemoteError, execnet.TimeoutError) as exc:
            raise SideError(f"{self.env.name}: the side's process stopped answering ({type(exc).__name__}: "
                            f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else 'no message'})",
                            (self.env.name,)) from None
        if not isinstance(answer, dict) or not answer.get("ok"):
            error = answer.get("error") if isinstance(answer, dict) else repr(answer)
            raise SideError(f"{self.env.name}: {error}", (self.env.name,))
        return answer

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Send one command and wait for its answer."""
        self.send(op, **args)
        return self.receive()

    def close(self) -> None:
        """Ask the side to close its session, then end its process and reap it (:meth:`end`)."""
        self.ask_close()
        self.end()

    def ask_close(self) -> None:
        """Send ``close`` (the side closes its session and answers); :meth:`end` waits for the answer."""
        channel = getattr(self, "channel", None)
        if getattr(self, "gateway", None) is None or channel is None:
            return
        try:
            if not channel.isclosed():
                channel.send({"op": "close"})
                self._asked = True
        except Exception:  # noqa: BLE001 - the process is ended by end() whatever happened here
            pass

    def end(self) -> None:
        """Wait (30 s at most) for the answer to ``close``, then end the process and reap it. A side that answered
        has nothing left to do, so it is ended at once (SIGTERM on POSIX; its process is this one's child and not
        yet reaped, so its pid cannot belong to another): left to exit through execnet, it took about 1 s to go
        here, one side after the other. One that did not answer gets execnet's exit and is killed if it is still
        there 30 s later (a minute at most in all)."""
        if getattr(self, "gateway", None) is None:  # never started, or ended: nothing left behind
            self.group.terminate(timeout=30)
            return
        answered = False
        if self._asked:
            try:
                self.channel.receive(30)
                answered = True
            except Exception:  # noqa: BLE001 - ended below whatever it answered
                pass
        pid = getattr(self, "hello", {}).get("pid")
        if answered and isinstance(pid, int) and os.name == "posix":
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        self.group.terminate(timeout=30)
        self.gateway = None


def close_both(sides: tuple[Side, Side]) -> None:
    """Close both sides at once: ``close`` sent to both, then each answer awaited and its process ended (the second
    also when ending the first raised)."""
    for side in sides:
        side.ask_close()
    try:
        sides[0].end()
    finally:
        sides[1].end()


def both(sides: tuple[Side, Side], op: str, args: tuple[dict[str, Any], dict[str, Any]] | None = None
         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same command on both sides at once (each with its own ``args``), both answers."""
    a, b = args or ({}, {})
    sides[0].send(op, **a)
    sides[1].send(op, **b)
    answers: list[dict[str, Any]] = []
    errors: list[SideError] = []
    for side in sides:  # both answers are read, so neither is left queued for the next command
        try:
            answers.append(side.receive())
        except SideError as exc:
            errors.append(exc)
    if errors:
        raise SideError("; ".join(str(e) for e in errors), tuple(n for e in errors for n in e.sides))
    return answers[0], answers[1]
