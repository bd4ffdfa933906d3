"""The Linux target's program: level-0 services and the agent, on kernel sockets.

Run it inside the target's network namespace (the lab starts it with ``ip netns exec``)::

    python -m targets.linux.agent [--services echo:7,discard:9,chargen:19,udp-echo:7] [--no-agent]

Everything is non-blocking and driven by one ``selectors`` loop, so the services stay fast
(a 1 MB echo is a handful of 256 KiB reads and writes) while the agent waits on a deferred
command. The agent's protocol logic is the shared core (:mod:`targets.agent.server`); this
module only maps its operations onto sockets, and reads the namespace's sysctls and
``/proc/net`` statistics for ``info`` and ``counters`` (both per network namespace, as seen by
this process). ``ready: ...`` is printed once every service listens; SIGTERM/SIGINT end the
program; EOF on stdin only ends the agent, the services keep running.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

from stack.services import CHARGEN, ServiceSpec, parse_services
from targets.agent.server import (
    AgentCore,
    AgentFailure,
    Backend,
    BackendConn,
    BackendListener,
    Interest,
)

DEFAULT_SERVICES = "echo:7,discard:9,chargen:19,udp-echo:7"
READ_SIZE = 256 * 1024
ECHO_HIGH_WATER = 1 << 20  # stop reading while this much echo data waits to go back

EventCallback = Callable[[int], None]
R = selectors.EVENT_READ
W = selectors.EVENT_WRITE


def now_us() -> int:
    return time.monotonic_ns() // 1000


class Loop:
    """One selector; every registered object carries the callback for its events."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()

    def want(self, sock: socket.socket, events: int, callback: EventCallback) -> None:
        """Watch ``sock`` for ``events`` (0: stop watching)."""
        try:
            key = self.sel.get_key(sock)
        except (KeyError, ValueError):
            key = None
        if key is None:
            if events:
                self.sel.register(sock, events, callback)
        elif not events:
            self.sel.unregister(sock)
        elif key.events != events or key.data is not callback:
            self.sel.modify(sock, events, callback)

    def forget(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(sock)


def _addr(sockaddr: tuple[object, ...]) -> tuple[str, int]:
    """(host, port) with IPv4-mapped IPv6 addresses shown as IPv4."""
    host = str(sockaddr[0])
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, int(str(sockaddr[1]))


def dual_stack(kind: int, port: int) -> socket.socket:
    """A socket bound to ``port`` on every IPv4 and IPv6 address (IPv4 only without IPv6)."""
    try:
        sock = socket.socket(socket.AF_INET6, kind)
    except OSError as exc:
        if exc.errno != errno.EAFNOSUPPORT:
            raise
        sock = socket.socket(socket.AF_INET, kind)
        where: tuple[str, int] = ("0.0.0.0", port)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        where = ("::", port)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


# ----------------------------------------------------------------------------- services


class _Session:
    """One accepted service connection; closes itself on errors."""

    def __init__(self, loop: Loop, sock: socket.socket) -> None:
        self.loop = loop
        self.sock = sock
        self.closed = False
        sock.setblocking(False)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.forget(self.sock)
            self.sock.close()

    def _recv(self) -> bytes | None:
        """Data, ``b""`` at EOF, None if nothing now; closes on a hard error."""
        try:
            return self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            self.close()
            return None


class Echo(_Session):
    """RFC 862: everything back, byte for byte; close after the peer's FIN once all is sent."""

    def __init__(self, loop: Loop, sock: socket.socket) -> None:
        super().__init__(loop, sock)
        self.pending = bytearray()
        self.eof = False
        loop.want(sock, R, self.event)

    def event(self, mask: int) -> None:
        if mask & R and not self.eof:
            data = self._recv()
            if self.closed:
                return
            if data == b"":
                self.eof = True
            elif data:
                self.pending += data
        if self.pending:
            try:
                n = self.sock.send(self.pending)
                del self.pending[:n]
            except BlockingIOError:
                pass
            except OSError:
                self.close()
                return
        if self.eof and not self.pending:
            self.close()
            return
        events = (R if not self.eof and len(self.pending) < ECHO_HIGH_WATER else 0) | (
            W if self.pending else 0
        )
        self.loop.want(self.sock, events, self.event)


class Discard(_Session):
    """RFC 863: read and drop; close at the peer's FIN."""

    def __init__(self, loop: Loop, sock: socket.socket) -> None:
        super().__init__(loop, sock)
        loop.want(sock, R, self.event)

    def event(self, mask: int) -> None:
        if self._recv() == b"":
            self.close()


class Chargen(_Session):
    """RFC 864: the character pattern as fast as the peer takes it; with ``limit`` that many
    bytes, then FIN (and close once the peer closed, so unread input causes no RST)."""

    RUN = CHARGEN * (READ_SIZE // len(CHARGEN) + 2)

    def __init__(self, loop: Loop, sock: socket.socket, limit: int | None) -> None:
        super().__init__(loop, sock)
        self.sent = 0
        self.limit = limit
        self.done = False
        loop.want(sock, R | W, self.event)

    def event(self, mask: int) -> None:
        if mask & R:
            data = self._recv()
            if self.closed:
                return
            if data == b"":
                self.close()
                return
        if mask & W and not self.done:
            size = READ_SIZE if self.limit is None else min(READ_SIZE, self.limit - self.sent)
            start = self.sent % len(CHARGEN)
            try:
                self.sent += self.sock.send(self.RUN[start : start + size])
            except BlockingIOError:
                pass
            except OSError:
                self.close()
                return
            if self.limit is not None and self.sent >= self.limit:
                self.done = True
                try:
                    self.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    self.close()
                    return
                self.loop.want(self.sock, R, self.event)


class TcpService:
    def __init__(self, loop: Loop, spec: ServiceSpec) -> None:
        self.loop = loop
        self.spec = spec
        self.sock = dual_stack(socket.SOCK_STREAM, spec.port)
        self.sock.listen(128)
        loop.want(self.sock, R, self.event)

    def event(self, mask: int) -> None:
        for _ in range(64):
            try:
                conn, _peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ECONNABORTED and friends: that one is gone, the listener is fine
                continue
            if self.spec.kind == "echo":
                Echo(self.loop, conn)
            elif self.spec.kind == "discard":
                Discard(self.loop, conn)
            else:
                Chargen(self.loop, conn, self.spec.arg)


class UdpEcho:
    def __init__(self, loop: Loop, port: int) -> None:
        self.sock = dual_stack(socket.SOCK_DGRAM, port)
        loop.want(self.sock, R, self.event)

    def event(self, mask: int) -> None:
        for _ in range(64):
            try:
                data, src = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error queued on the socket: read, move on
                continue
            with contextlib.suppress(OSError):
                self.sock.sendto(data, src)


# ----------------------------------------------------------------------------- agent backend

_ERRNO_CODES = {
    errno.ECONNREFUSED: "refused",
    errno.ENETUNREACH: "unreachable",
    errno.EHOSTUNREACH: "unreachable",
    errno.EADDRNOTAVAIL: "unreachable",
    errno.ENETDOWN: "unreachable",
    errno.ETIMEDOUT: "timeout",
    errno.ECONNRESET: "reset",
    errno.ECONNABORTED: "reset",
    errno.EPIPE: "reset",
    errno.EADDRINUSE: "inuse",
    errno.ENOMEM: "nomem",
    errno.ENOBUFS: "nomem",
    errno.EMFILE: "nomem",
    errno.ENFILE: "nomem",
    errno.EINVAL: "usage",
}

# include/net/tcp_states.h -> RFC 9293 names
_STATES = {
    1: "ESTABLISHED",
    2: "SYN-SENT",
    3: "SYN-RECEIVED",
    4: "FIN-WAIT-1",
    5: "FIN-WAIT-2",
    6: "TIME-WAIT",
    7: "CLOSED",
    8: "CLOSE-WAIT",
    9: "LAST-ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "SYN-RECEIVED",  # TCP_NEW_SYN_RECV
}


def _failure(exc: OSError) -> AgentFailure:
    code = _ERRNO_CODES.get(exc.errno or 0, "internal")
    return AgentFailure(code, exc.strerror or str(exc))


def _noop(mask: int) -> None:
    """Agent sockets: the event only wakes the loop; the core's poll does the work."""


class LinuxConn(BackendConn):
    def __init__(self, backend: LinuxBackend, sock: socket.socket, connecting: bool) -> None:
        self.backend = backend
        self.sock = sock
        self.connecting = connecting
        self._error: str | None = None
        if not connecting:
            self.local = _addr(sock.getsockname())
            self.remote = _addr(sock.getpeername())

    def check_connected(self) -> bool:
        if not self.connecting:
            return True
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise _failure(OSError(err, os.strerror(err)))
        try:
            peer = self.sock.getpeername()
        except OSError:
            return False  # ENOTCONN: still in SYN-SENT
        self.connecting = False
        self.local = _addr(self.sock.getsockname())
        self.remote = _addr(peer)
        return True

    def _fail(self, exc: OSError) -> AgentFailure:
        failure = _failure(exc)
        if failure.code in ("reset", "timeout", "refused"):
            self._error = failure.code
        return failure

    def read(self, max_bytes: int) -> bytes | None:
        try:
            return self.sock.recv(max_bytes)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            raise self._fail(exc) from None

    def write(self, data: bytes) -> int:
        try:
            return self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            raise self._fail(exc) from None

    def shutdown(self, how: str) -> None:
        mode = {"wr": socket.SHUT_WR, "rd": socket.SHUT_RD, "rdwr": socket.SHUT_RDWR}[how]
        try:
            self.sock.shutdown(mode)
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:
                raise AgentFailure(self.error() or "closed", "not connected") from None
            raise self._fail(exc) from None

    def close(self) -> None:
        self.backend.loop.forget(self.sock)
        self.sock.close()

    def abort(self) -> None:
        self.backend.loop.forget(self.sock)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def state(self) -> str:
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        except OSError:
            return "unknown"
        return _STATES.get(info[0], "unknown")

    def error(self) -> str | None:
        if self._error is None:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(OSError(err, os.strerror(err)))
        return self._error

    def setopt(self, name: str, value: int) -> None:
        if name == "nodelay":
            level, opt, val = socket.IPPROTO_TCP, socket.TCP_NODELAY, value
        elif name == "keepalive":
            level, opt, val = socket.SOL_SOCKET, socket.SO_KEEPALIVE, value
        elif name in ("keepidle", "keepintvl"):
            # Linux counts these in whole seconds: round up, at least 1 s.
            opt = socket.TCP_KEEPIDLE if name == "keepidle" else socket.TCP_KEEPINTVL
            level, val = socket.IPPROTO_TCP, max(1, -(-value // 1000))
        elif name == "keepcnt":
            level, opt, val = socket.IPPROTO_TCP, socket.TCP_KEEPCNT, value
        else:
            raise AgentFailure("unsupported", name)
        try:
            self.sock.setsockopt(level, opt, val)
        except OSError as exc:
            raise _failure(exc) from None


class LinuxListener(BackendListener):
    def __init__(self, backend: LinuxBackend, sock: socket.socket) -> None:
        self.backend = backend
        self.sock = sock

    def accept(self) -> BackendConn | None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return None
            except OSError:
                continue  # aborted before we took it: try the next one
            conn.setblocking(False)
            try:
                return LinuxConn(self.backend, conn, connecting=False)
            except OSError:  # reset between accept and getpeername
                conn.close()

    def close(self) -> None:
        self.backend.loop.forget(self.sock)
        self.sock.close()


SYSCTLS = (
    "net.ipv4.tcp_sack",
    "net.ipv4.tcp_dsack",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_window_scaling",
    "net.ipv4.tcp_ecn",
    "net.ipv4.tcp_fastopen",
    "net.ipv4.tcp_congestion_control",
    "net.ipv4.tcp_syn_retries",
    "net.ipv4.tcp_synack_retries",
    "net.ipv4.tcp_retries1",
    "net.ipv4.tcp_retries2",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_mtu_probing",
    "net.ipv4.tcp_base_mss",
    "net.ipv4.tcp_early_retrans",
    "net.ipv4.tcp_recovery",
    "net.ipv4.tcp_frto",
    "net.ipv4.tcp_no_metrics_save",
    "net.ipv4.tcp_moderate_rcvbuf",
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_autocorking",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_abort_on_overflow",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.ip_default_ttl",
    "net.ipv4.ip_no_pmtu_disc",
    "net.core.rmem_default",
    "net.core.rmem_max",
    "net.core.wmem_default",
    "net.core.wmem_max",
    "net.core.somaxconn",
    "net.core.default_qdisc",
)

# /proc/net/netstat and snmp fields summed into ``drops``
_DROP_FIELDS = (
    ("TcpExt", "ListenDrops"),
    ("TcpExt", "TCPBacklogDrop"),
    ("TcpExt", "TCPRcvQDrop"),
    ("TcpExt", "TCPOFODrop"),
    ("TcpExt", "TCPMinTTLDrop"),
    ("TcpExt", "PFMemallocDrop"),
    ("Ip", "InDiscards"),
    ("Ip6", "Ip6InDiscards"),
)
_EXTRA_FIELDS = {
    "tcp.curr_estab": ("Tcp", "CurrEstab"),
    "tcp.active_opens": ("Tcp", "ActiveOpens"),
    "tcp.passive_opens": ("Tcp", "PassiveOpens"),
    "tcp.attempt_fails": ("Tcp", "AttemptFails"),
    "tcp.estab_resets": ("Tcp", "EstabResets"),
    "tcp.in_segs": ("Tcp", "InSegs"),
    "tcp.out_segs": ("Tcp", "OutSegs"),
    "tcp.retrans_segs": ("Tcp", "RetransSegs"),
    "tcp.in_errs": ("Tcp", "InErrs"),
    "tcp.out_rsts": ("Tcp", "OutRsts"),
    "tcp.listen_overflows": ("TcpExt", "ListenOverflows"),
    "tcp.listen_drops": ("TcpExt", "ListenDrops"),
    "tcp.backlog_drops": ("TcpExt", "TCPBacklogDrop"),
    "tcp.timeouts": ("TcpExt", "TCPTimeouts"),
    "tcp.keepalive_probes": ("TcpExt", "TCPKeepAlive"),
    "tcp.zero_window_drops": ("TcpExt", "TCPZeroWindowDrop"),
    "ip.in_discards": ("Ip", "InDiscards"),
    "ip6.in_discards": ("Ip6", "Ip6InDiscards"),
}


def read_sysctls(root: Path = Path("/proc/sys")) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in SYSCTLS:
        try:
            value = (root / key.replace(".", "/")).read_text()
        except OSError:
            continue
        out[key] = ",".join(value.split())
    return out


def read_snmp(proc: Path = Path("/proc/net")) -> dict[tuple[str, str], int]:
    """Every counter of ``netstat``, ``snmp`` (name/value line pairs) and ``snmp6``."""
    out: dict[tuple[str, str], int] = {}
    for name in ("snmp", "netstat"):
        try:
            lines = (proc / name).read_text().splitlines()
        except OSError:
            continue
        for head, values in zip(lines[::2], lines[1::2], strict=False):
            group, _, keys = head.partition(":")
            nums = values.partition(":")[2].split()
            for k, v in zip(keys.split(), nums, strict=False):
                if v.lstrip("-").isdigit():
                    out[(group, k)] = int(v)
    try:
        for line in (proc / "snmp6").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                out[("Ip6", parts[0])] = int(parts[1])
    except OSError:
        pass
    return out


def read_tcp_table(proc: Path = Path("/proc/net")) -> tuple[dict[str, int], int]:
    """Sockets per state (hex state -> count) and their queued bytes (tx + rx), listeners
    excluded (their rx_queue is an accept backlog, not bytes)."""
    states: dict[str, int] = {}
    queued = 0
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 5:
                continue
            st = parts[3]
            states[st] = states.get(st, 0) + 1
            if st != "0A":
                tx, _, rx = parts[4].partition(":")
                queued += int(tx, 16) + int(rx, 16)
    return states, queued


class LinuxBackend(Backend):
    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self._watched: dict[int, socket.socket] = {}

    def hello(self) -> dict[str, str]:
        return {"stack": "linux", "version": os.uname().release}

    def info(self) -> dict[str, str]:
        return {"kernel": os.uname().release, **read_sysctls()}

    def listen(self, port: int, backlog: int | None) -> BackendListener:
        try:
            sock = dual_stack(socket.SOCK_STREAM, port)
        except OSError as exc:
            raise _failure(exc) from None
        try:
            sock.listen(128 if backlog is None else backlog)
        except OSError as exc:
            sock.close()
            raise _failure(exc) from None
        return LinuxListener(self, sock)

    def connect(self, addr: str, port: int) -> BackendConn:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            raise _failure(exc) from None
        sock.setblocking(False)
        err = sock.connect_ex((addr, port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise _failure(OSError(err, os.strerror(err)))
        return LinuxConn(self, sock, connecting=True)

    def counters(self) -> dict[str, int]:
        states, queued = read_tcp_table()
        snmp = read_snmp()
        out = {
            "connections": sum(n for st, n in states.items() if st != "0A"),
            "buffers": queued,
            "drops": sum(snmp.get(f, 0) for f in _DROP_FIELDS),
            "tcp.listening": states.get("0A", 0),
            "tcp.established": states.get("01", 0),
            "tcp.time_wait": states.get("06", 0),
        }
        out.update({k: snmp[f] for k, f in _EXTRA_FIELDS.items() if f in snmp})
        return out

    def sync(self, interest: list[Interest]) -> None:
        """Make the selector watch exactly what the core waits for."""
        wanted: dict[int, tuple[socket.socket, int]] = {}
        for obj, r, w in interest:
            sock = getattr(obj, "sock", None)
            if isinstance(sock, socket.socket) and sock.fileno() >= 0:
                wanted[id(sock)] = (sock, (R if r else 0) | (W if w else 0))
        for key, sock in list(self._watched.items()):
            if key not in wanted:
                if sock.fileno() >= 0:
                    self.loop.forget(sock)
                del self._watched[key]
        for key, (sock, events) in wanted.items():
            self.loop.want(sock, events, _noop)
            self._watched[key] = sock


# ----------------------------------------------------------------------------- main


def _write(text: str) -> bool:
    data = (text + "\n").encode("ascii", "replace")
    try:
        while data:
            data = data[os.write(1, data) :]
    except OSError:
        return False
    return True


class Program:
    def __init__(self, services: list[ServiceSpec], agent: bool) -> None:
        self.loop = Loop()
        self.stop: int | None = None
        self.handles: list[TcpService | UdpEcho] = []
        for spec in services:
            if spec.kind == "udp-echo":
                self.handles.append(UdpEcho(self.loop, spec.port))
            else:
                self.handles.append(TcpService(self.loop, spec))
        self.backend: LinuxBackend | None = None
        self.core: AgentCore | None = None
        if agent:
            self.backend = LinuxBackend(self.loop)
            self.core = AgentCore(self.backend, self._emit, now_us, self._log)
            # stdin stays blocking (it may be the user's terminal): one read per readiness
            self.loop.sel.register(0, R, self._stdin)
        self._console_open = True

    def _emit(self, line: str) -> None:
        if self._console_open and not _write(line):
            self._console_open = False

    @staticmethod
    def _log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def _stdin(self, mask: int) -> None:
        try:
            data = os.read(0, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            if self.core is not None:
                self.core.feed(data)
            return
        # EOF: nobody will talk to the agent again; its sockets go, the services stay.
        self.loop.sel.unregister(0)
        if self.core is not None and self.backend is not None:
            self.core.close_all()
            self.backend.sync([])
        self.core = None

    def run(self) -> int:
        rsock, wsock = socket.socketpair()
        rsock.setblocking(False)
        wsock.setblocking(False)
        old_wakeup = signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)

        def handler(signum: int, frame: object) -> None:
            self.stop = signum

        old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        self.loop.sel.register(rsock, R, lambda mask: None)
        try:
            while self.stop is None:
                timeout = None
                if self.core is not None:
                    at = self.core.poll_at()
                    if at is not None:
                        timeout = max(0.0, (at - now_us()) / 1e6)
                for key, mask in self.loop.sel.select(timeout):
                    if self.stop is not None:
                        break
                    callback: EventCallback = key.data
                    callback(mask)
                if self.core is not None and self.backend is not None:
                    self.core.poll()
                    self.backend.sync(self.core.interest())
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, h in old.items():
                signal.signal(sig, h)
            rsock.close()
            wsock.close()
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m targets.linux.agent",
        description="Level-0 services and the agent protocol on the kernel's sockets "
        "(run inside the target's network namespace).",
    )
    parser.add_argument(
        "--services",
        default=DEFAULT_SERVICES,
        metavar="LIST",
        help=f"services to offer (default {DEFAULT_SERVICES})",
    )
    parser.add_argument("--no-agent", action="store_true", help="services only; stdin unused")
    args = parser.parse_args(argv)
    try:
        services = parse_services(args.services)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        program = Program(services, agent=not args.no_agent)
    except OSError as exc:
        print(f"targets.linux.agent: cannot open the services: {exc}", file=sys.stderr)
        return 1
    svc = ", ".join(str(s) for s in services) or "none"
    agent = "; agent on stdin" if program.core is not None else ""
    _write(f"ready: linux {os.uname().release}; services {svc}{agent}")
    return program.run()


if __name__ == "__main__":
    sys.exit(main())
