"""The agent backend of the reference stack (``hil stack serve --agent``, target ``local``).

It drives the stack's TCP user API (``TcpLayer.listen``/``connect``, ``TcpSocket`` send, recv,
shutdown, close, abort) and nothing else, so what the harness observes through the agent is
what any application on the stack would cause. The core runs as one of the interface's pollers
(:func:`attach`): every ``Interface.poll`` advances a pending command, and a pending command's
deadline is part of ``Interface.poll_at``. That keeps it sans-IO and exact in virtual time as
well as in real time: the driver only has to feed console bytes to :meth:`AgentCore.feed`.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Callable
from typing import Any

from stack.iface import Interface
from stack.tcp.layer import Listener, TcpLayer
from stack.tcp.profile import describe, flatten
from stack.tcp.socket import State, TcpError, TcpSocket
from stack.wire import addr as A
from targets.agent.server import (
    AgentCore,
    AgentFailure,
    Backend,
    BackendConn,
    BackendListener,
)

__all__ = ["LocalBackend", "attach"]

_ERRORS = {"refused": "refused", "reset": "reset", "timeout": "timeout", "aborted": "reset"}


def _addr(raw: bytes) -> str:
    return A.ip_str(raw)


class LocalConn(BackendConn):
    def __init__(self, sock: TcpSocket) -> None:
        self.sock = sock
        self.local = (_addr(sock.local), sock.local_port)
        self.remote = (_addr(sock.remote), sock.remote_port)
        self._rd_shut = False

    def check_connected(self) -> bool:
        s = self.sock
        if s.established:
            return True
        if s.state is State.CLOSED:
            raise AgentFailure(_ERRORS.get(s.error or "", "internal"), "connection failed")
        return False

    def _failure(self) -> AgentFailure:
        err = self.sock.error
        if err is not None:
            return AgentFailure(_ERRORS.get(err, "reset"), f"connection {err}")
        return AgentFailure("closed", f"connection in {self.sock.state}")

    def read(self, max_bytes: int) -> bytes | None:
        s = self.sock
        if self._rd_shut:
            s.recv()  # shut for reading: what arrives is dropped
            return b""
        data = s.recv(max_bytes)
        if data:
            return data
        if s.eof:
            return b""
        if s.state is State.CLOSED and s.error is not None:
            raise self._failure()
        return None

    def write(self, data: bytes) -> int:
        try:
            return self.sock.send(data)
        except TcpError:
            raise self._failure() from None

    def shutdown(self, how: str) -> None:
        if how in ("rd", "rdwr"):
            self._rd_shut = True
        if how in ("wr", "rdwr"):
            self.sock.shutdown()

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        self.sock.abort()

    def state(self) -> str:
        return self.sock.state.value

    def error(self) -> str | None:
        err = self.sock.error
        return _ERRORS.get(err, "reset") if err is not None else None

    def setopt(self, name: str, value: int) -> None:
        s = self.sock
        if name == "nodelay":
            s.nagle = not value
            s.layer.wake(s)  # anything Nagle held back may go now
        elif name == "keepalive":
            s.set_keepalive(bool(value))
        elif name in ("keepidle", "keepintvl", "keepcnt"):
            # The keep-alive timings live in the socket's config, which it shares with its
            # listener or the layer: give this socket a copy of its own before changing it.
            cfg = dataclasses.replace(s.cfg)
            if name == "keepidle":
                cfg.keepalive_idle_us = value * 1000
            elif name == "keepintvl":
                cfg.keepalive_interval_us = value * 1000
            else:
                cfg.keepalive_count = value
            s.cfg = cfg
            s.set_keepalive(s.keepalive)  # re-arm with the new idle time
        else:
            raise AgentFailure("unsupported", name)


class LocalListener(BackendListener):
    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def accept(self) -> BackendConn | None:
        sock = self.listener.accept()
        return LocalConn(sock) if sock is not None else None

    def close(self) -> None:
        self.listener.close()


class LocalBackend(Backend):
    def __init__(
        self,
        iface: Interface,
        tcp: TcpLayer,
        now: Callable[[], int],
        profile: str = "custom",
        overrides: list[str] | None = None,
    ) -> None:
        self.iface = iface
        self.tcp = tcp
        self.now = now
        self.profile = profile
        self.overrides = overrides or []

    def hello(self) -> dict[str, str]:
        try:
            version = importlib.metadata.version("tcp-hil")
        except importlib.metadata.PackageNotFoundError:
            version = "dev"
        return {"stack": "local", "version": version, "profile": self.profile}

    def info(self) -> dict[str, str]:
        out = {"profile": self.profile, "overrides": ",".join(self.overrides) or "none"}
        out.update({f"tcp.{k}": _fmt(v) for k, v in flatten(describe(self.tcp.config)).items()})
        out["mtu"] = str(self.iface.config.mtu)
        return out

    def listen(self, port: int, backlog: int | None) -> BackendListener:
        try:
            lst = self.tcp.listen(port, backlog=backlog or None)
        except OSError as exc:
            raise AgentFailure("inuse", str(exc)) from None
        return LocalListener(lst)

    def connect(self, addr: str, port: int) -> BackendConn:
        try:
            sock = self.tcp.connect(self.now(), A.ip_parse(addr), port)
        except OSError as exc:
            text = str(exc)
            code = "nomem" if "too many" in text or "ephemeral" in text else "unreachable"
            raise AgentFailure(code, text) from None
        return LocalConn(sock)

    def counters(self) -> dict[str, int]:
        c = self.iface.counters
        socks = self.tcp.sockets()
        drops = c["rx.drop"] + c["rx.malformed"] + c["tcp.listen.overflow"]
        drops += sum(v for k, v in c.items() if k.startswith("tcp.rx.drop."))
        out = {
            "connections": len(socks),
            "buffers": sum(s.unacked + s.readable for s in socks),
            "drops": drops,
            "rx.frames": c["rx.frames"],
            "tx.frames": c["tx.frames"],
        }
        out.update({k: v for k, v in sorted(c.items()) if k.startswith("tcp.")})
        return out


class _Poller:
    """The core as an interface poller: polled with the stack, its deadline in ``poll_at``."""

    def __init__(self, core: AgentCore) -> None:
        self.core = core

    def poll(self, now: int) -> None:
        self.core.poll(now)

    def poll_at(self) -> int | None:
        return self.core.poll_at()


def attach(
    iface: Interface,
    tcp: TcpLayer,
    now: Callable[[], int],
    emit: Callable[[str], None],
    profile: str = "custom",
    overrides: list[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> AgentCore:
    """An agent on ``tcp``, polled by ``iface``; feed it console bytes with ``feed``."""
    core = AgentCore(LocalBackend(iface, tcp, now, profile, overrides), emit, now, log)
    iface.add_poller(_Poller(core))
    return core


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return "none" if value is None else str(value)
