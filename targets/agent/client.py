"""The Python side of the agent protocol (docs/agent.md).

The client talks to whatever byte stream carries a target's console: a child process's
stdin/stdout, a pty, a serial port. It only needs two file descriptors, so the same code drives a
host program and a board. Lines that are not replies (boot messages, logs, ``ready:``) are kept
in :attr:`Agent.console` rather than dropped: they are evidence when a command fails.
"""

from __future__ import annotations

import os
import select
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

PROTOCOL = "tcp-hil"
MAJOR = 1
MAX_LINE = 255


class AgentError(Exception):
    """The agent answered ``err CODE TEXT`` (or did not answer: code ``timeout``/``eof``)."""

    def __init__(self, command: str, code: str, text: str = "") -> None:
        self.command = command
        self.code = code
        self.text = text
        super().__init__(f"agent: {command!r} -> err {code}{' ' + text if text else ''}")


@dataclass(frozen=True)
class Received:
    total: int
    crc32: int
    eof: bool


def pattern_bytes(pattern: str, offset: int, n: int) -> bytes:
    """The bytes ``[offset, offset+n)`` of a send stream written with ``pattern``."""
    if pattern == "seq":
        return bytes((offset + i) & 0xFF for i in range(n))
    if pattern == "zero":
        return bytes(n)
    if pattern.startswith("hex:"):
        unit = bytes.fromhex(pattern[4:])
        if not unit:
            raise ValueError("hex: pattern needs at least one byte")
        start = offset % len(unit)
        reps = (start + n) // len(unit) + 1
        return (unit * reps)[start : start + n]
    raise ValueError(f"unknown pattern {pattern!r}; use seq, zero or hex:HEX")


def crc32_hex(data: bytes, crc: int = 0) -> str:
    return f"{zlib.crc32(data, crc) & 0xFFFFFFFF:08x}"


def _kv(words: list[str]) -> dict[str, str]:
    return dict(w.split("=", 1) for w in words if "=" in w)


class Agent:
    """One agent session; not thread-safe (the protocol has one command outstanding)."""

    def __init__(
        self,
        rfd: int,
        wfd: int,
        timeout_s: float = 5.0,
        on_console: Callable[[str], None] | None = None,
    ) -> None:
        self.rfd = rfd
        self.wfd = wfd
        self.timeout_s = timeout_s
        self.console: deque[str] = deque(maxlen=1000)
        self.on_console = on_console
        self._buf = b""

    # -- transport ------------------------------------------------------------------------
    def _readline(self, deadline: float, command: str) -> str:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AgentError(command, "timeout", "no reply from the agent")
            ready, _, _ = select.select([self.rfd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.rfd, 4096)
            if not chunk:
                raise AgentError(command, "eof", "the agent's console closed")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("ascii", "replace")

    def write_raw(self, data: bytes) -> None:
        """Bytes to the console as they are (framing tests); no reply is awaited."""
        os.write(self.wfd, data)

    def command(self, line: str, timeout_s: float | None = None) -> list[str]:
        """Send one command; return the words after ``ok`` or raise :class:`AgentError`."""
        if "\n" in line or len(line) + 1 > MAX_LINE:
            raise ValueError(f"not a command line: {line!r}")
        os.write(self.wfd, line.encode("ascii") + b"\n")
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            reply = self._readline(deadline, line)
            words = reply.split(" ")
            if words[0] == "ok":
                return words[1:]
            if words[0] == "err":
                raise AgentError(line, words[1] if len(words) > 1 else "", " ".join(words[2:]))
            self.console.append(reply)
            if self.on_console is not None:
                self.on_console(reply)

    def _deferred(self, timeout_ms: int | None) -> float | None:
        """A deferred command's client-side timeout: the agent's own timeout plus slack."""
        return None if timeout_ms is None else timeout_ms / 1000 + self.timeout_s

    # -- commands -------------------------------------------------------------------------
    def hello(self) -> dict[str, str]:
        info = _kv(self.command("hello"))
        proto = info.get("agent", "")
        name, _, major = proto.partition("/")
        if name != PROTOCOL or major != str(MAJOR):
            raise AgentError("hello", "version", f"agent speaks {proto!r}, client {PROTOCOL}/1")
        return info

    def help(self) -> set[str]:
        return set(self.command("help"))

    def info(self) -> dict[str, str]:
        return _kv(self.command("info"))

    def listen(self, port: int, backlog: int | None = None) -> int:
        extra = f" {backlog}" if backlog is not None else ""
        return int(self.command(f"listen {port}{extra}")[0])

    def accept(self, sid: int, timeout_ms: int = 5000) -> tuple[int, str, int]:
        w = self.command(f"accept {sid} {timeout_ms}", self._deferred(timeout_ms))
        return int(w[0]), w[1], int(w[2])

    def connect(self, addr: str, port: int, timeout_ms: int = 5000) -> tuple[int, str, int]:
        w = self.command(f"connect {addr} {port} {timeout_ms}", self._deferred(timeout_ms))
        return int(w[0]), w[1], int(w[2])

    def send(
        self,
        cid: int,
        n: int,
        pattern: str = "seq",
        chunk: int | None = None,
        timeout_s: float = 30.0,
    ) -> int:
        extra = f" {chunk}" if chunk is not None else ""
        return int(self.command(f"send {cid} {n} {pattern}{extra}", timeout_s)[0])

    def recv(self, cid: int, n: int, timeout_ms: int = 5000) -> Received:
        kv = _kv(self.command(f"recv {cid} {n} {timeout_ms}", self._deferred(timeout_ms)))
        return Received(int(kv["total"]), int(kv["crc32"], 16), kv["eof"] == "1")

    def shutdown(self, cid: int, how: str = "wr") -> None:
        self.command(f"shutdown {cid} {how}")

    def close(self, handle: int) -> None:
        self.command(f"close {handle}")

    def abort(self, cid: int) -> None:
        self.command(f"abort {cid}")

    def status(self, cid: int) -> dict[str, str]:
        return _kv(self.command(f"status {cid}"))

    def setopt(self, cid: int, name: str, value: int) -> None:
        self.command(f"setopt {cid} {name} {value}")

    def counters(self) -> dict[str, int]:
        return {k: int(v) for k, v in _kv(self.command("counters")).items() if v.isdigit()}

    def mark(self, text: str) -> str:
        return " ".join(self.command(f"mark {text}"))

    def reset(self) -> None:
        self.command("reset")
