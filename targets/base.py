"""The interface every target driver has, and the one most of them share: a program.

A driver knows how to run one stack under test at a :class:`Placement` the lab gives it (a
namespace and an interface name, or a board's NIC) and nothing about the rest of the lab: the
lab builds the links and the tester side, the driver starts and stops the target, says when it
is ready, hands out its agent and describes its build for the report.

:class:`ProcessDriver` covers every target that is a program on this host (linux services,
the reference stack, lwIP, a user's native binary): it starts the program in the target's
namespace in a process group of its own (so a stop reaches every child it forked), keeps its
console in a log file, waits for its ready line, and speaks the agent protocol over its
stdin/stdout.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from targets.agent.client import Agent


class TargetError(RuntimeError):
    """A target could not be brought up or used; the message says what to look at."""


@dataclass(frozen=True)
class Placement:
    """Where the lab put a target, and all a driver may touch.

    ``netns``: the namespace the target runs in (None: the host's own, e.g. a board).
    ``ifname``: the target-side interface in it: a TAP the program attaches to, or a veth end
    the namespace's kernel owns. ``logdir``: where the driver keeps consoles and build logs.
    """

    netns: str | None
    ifname: str
    logdir: Path
    mtu: int = 1500


@dataclass
class Driver:
    """Base of all drivers. Subclasses override what applies; the defaults are 'nothing'."""

    place: Placement

    def start(self) -> None:
        """Bring the target up; return when it is ready, else raise :class:`TargetError`."""

    def alive(self) -> str | None:
        """None while the target runs; otherwise why it does not (for ``hil lab status``)."""
        return None

    def agent(self) -> Agent | None:
        """The target's agent (level 1), if it has one."""
        return None

    def build_info(self) -> dict[str, Any]:
        """Versions, options and binary hashes, for the report."""
        return {}

    def pids(self) -> list[int]:
        return []

    def stop(self) -> None:
        """Tear the target down; idempotent, never raises."""


def netns_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


@dataclass
class ProcessDriver(Driver):
    """A target that is one program (and whatever it forks) on this host."""

    argv: list[str] = field(default_factory=list)
    env: Mapping[str, str] = field(default_factory=dict)
    ready: str | None = r"^ready:"
    ready_timeout_s: float = 20.0
    with_agent: bool = False
    agent_timeout_s: float = 5.0
    name: str = "target"

    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    ready_line: str = field(default="", init=False)
    console: deque[str] = field(default_factory=lambda: deque(maxlen=200), init=False)
    _agent: Agent | None = field(default=None, init=False)
    _reader: threading.Thread | None = field(default=None, init=False)
    _ready_evt: threading.Event = field(default_factory=threading.Event, init=False)
    _reply_w: int = field(default=-1, init=False)
    _reply_r: int = field(default=-1, init=False)
    _log: IO[str] | None = field(default=None, init=False)

    @property
    def console_log(self) -> Path:
        return self.place.logdir / f"{self.name}.console.log"

    def start(self) -> None:
        self.place.logdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.console_log, "a", buffering=1)  # noqa: SIM115 - lives with proc
        self._log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(self.argv)}\n")
        env = {**os.environ, **self.env}
        try:
            self.proc = subprocess.Popen(
                netns_argv(self.place.netns, self.argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: stop() reaches its children
            )
        except OSError as exc:
            raise TargetError(f"{self.name}: cannot start {self.argv[0]}: {exc}") from None
        # Replies go through a pipe the agent client reads; everything else only to the log.
        # A reader thread drains the console all the time, so a chatty target never blocks.
        self._reply_r, self._reply_w = os.pipe()
        self._reader = threading.Thread(target=self._read_console, daemon=True)
        self._reader.start()
        if self.ready is not None:
            if not self._ready_evt.wait(self.ready_timeout_s) or not self.ready_line:
                code = self.proc.poll()
                if code is None and self._ready_evt.is_set():  # console closed: it is ending
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        code = self.proc.wait(2)
                self.stop()
                tail = "\n  ".join(list(self.console)[-15:]) or "(no output)"
                why = (
                    f"exited with status {code} before printing a line matching {self.ready!r}"
                    if code is not None
                    else f"printed no line matching {self.ready!r} within "
                    f"{self.ready_timeout_s:g} s"
                )
                raise TargetError(f"{self.name}: {why}; console ({self.console_log}):\n  {tail}")
        if self.with_agent:
            assert self.proc.stdin is not None
            self._agent = Agent(self._reply_r, self.proc.stdin.fileno(), self.agent_timeout_s)

    def _read_console(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        pattern = re.compile(self.ready) if self.ready else None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if self._log is not None:
                self._log.write(f"{time.time():.6f} {line}\n")
            first = line.split(" ", 1)[0]
            if first in ("ok", "err"):
                os.write(self._reply_w, line.encode() + b"\n")
                continue
            self.console.append(line)
            if pattern is not None and not self.ready_line and pattern.search(line):
                self.ready_line = line
                self._ready_evt.set()
        self._ready_evt.set()  # the program ended: nobody waits for a ready line any longer
        os.close(self._reply_w)  # the agent client sees EOF

    def alive(self) -> str | None:
        if self.proc is None:
            return "not started"
        code = self.proc.poll()
        if code is None:
            return None
        tail = " | ".join(list(self.console)[-3:])
        return f"exited with {code}" + (f": {tail}" if tail else "")

    def agent(self) -> Agent | None:
        return self._agent

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def stop(self) -> None:
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(3)
            # Children the program forked may outlive it; the group is theirs as well.
            _signal_group(proc.pid, signal.SIGKILL)
            if proc.poll() is None:
                proc.wait(5)
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            if self._reader is not None:
                self._reader.join(5)
            if proc.stdout is not None:
                proc.stdout.close()
            self.proc = None
        if self._reply_r >= 0:
            os.close(self._reply_r)
            self._reply_r = -1
        if self._log is not None:
            self._log.close()
            self._log = None


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
