"""The two sides' processes: where each environment is, and an execnet gateway per side that runs
:func:`pytest_longeff.ab.side.serve` under the side's own interpreter, in its own directory."""

from __future__ import annotations

import os
import sys
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


#: glibc malloc settings for both sides' processes (unless set in this environment): a fixed mmap threshold (its
#: maximum, 32 MiB, instead of one that adapts to each process's history) and no trimming of the heap, so that
#: activations are served from a warm heap in every process rather than from fresh, page-faulting mappings in
#: some. On a shared 2-core machine one 4-pair A/A job showed less process-to-process spread with them, but the
#: replays (docs/validation/ab-replay.md) still saw 0.09-0.21 on the 1024-token cells: they remove one cause only.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824",
              "MALLOC_TOP_PAD_": "268435456"}


class Side:
    """One side's process, spoken to over an execnet channel: :meth:`send` then :meth:`receive` (so both sides can
    work at the same time), or :meth:`call` for both in one."""

    def __init__(self, env: Env) -> None:
        import execnet

        self.env = env
        malloc = "".join(f"//env:{k}={v}" for k, v in MALLOC_ENV.items() if k not in os.environ)
        spec = f"popen//python={env.python}//chdir={env.directory}{malloc}"
        try:
            self.gateway = execnet.makegateway(spec)
            self.channel = self.gateway.remote_exec("from pytest_longeff.ab.side import serve\nserve(channel)")
            self.send("hello")
            self.hello = self.receive()
        except (OSError, EOFError, execnet.gateway_base.RemoteError, execnet.HostNotFound) as exc:
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
        """Ask the side to close its session, then end its process."""
        gateway = getattr(self, "gateway", None)
        if gateway is None:
            return
        try:
            if not self.channel.isclosed():
                self.channel.send({"op": "close"})
                self.channel.receive(30)
        except Exception:  # the process is ended below whatever it answered
            pass
        gateway.exit()
        self.gateway = None


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
