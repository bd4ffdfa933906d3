"""The agent protocol's server side (docs/agent.md), shared by every Python agent.

Everything a target's agent must get right about the *protocol* lives here, once: framing,
parsing and validating every command (``err usage``), the handle table, send patterns with
their per-connection stream offset, the running CRC-32 of what was received, deferred replies
and their timeouts, and the error codes. A backend only supplies the stack operations
(:class:`Backend`, :class:`BackendConn`, :class:`BackendListener`), so the Linux agent (kernel
sockets) and the local one (the reference stack) cannot drift apart in how they speak.

The core is sans-IO: the driver feeds it console bytes (:meth:`AgentCore.feed`), calls
:meth:`AgentCore.poll` whenever something may have happened (a socket became ready, a frame
came in, :meth:`AgentCore.poll_at` passed) and gets reply lines through the ``emit`` callback.
Backend calls are all non-blocking; a deferred command is a :class:`Pending` that each poll
re-checks until it completes or its deadline passes.
"""

from __future__ import annotations

import ipaddress
import string
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "COMMANDS",
    "DEFAULT_TIMEOUT_MS",
    "ERROR_CODES",
    "MAX_LINE",
    "OPTIONS",
    "PROTOCOL",
    "AgentCore",
    "AgentFailure",
    "Backend",
    "BackendConn",
    "BackendListener",
    "Interest",
    "Pattern",
]

PROTOCOL = "tcp-hil/1"
MAX_LINE = 255
"""Longest command line in bytes, terminator included."""
DEFAULT_TIMEOUT_MS = 5000
READ_BUDGET = 1 << 20
"""Bytes consumed per connection per poll: a fast sender must not starve the console."""
SEND_STALL_US = 20_000_000  # send gives up after this long without progress
WRITE_BUDGET = 1 << 20
"""Bytes handed to the stack per poll by a pending ``send`` before the loop gets a turn."""
WRITE_PIECE = 64 * 1024

COMMANDS = (
    "hello",
    "help",
    "info",
    "listen",
    "accept",
    "connect",
    "send",
    "recv",
    "shutdown",
    "close",
    "abort",
    "status",
    "setopt",
    "counters",
    "mark",
    "reset",
)
ERROR_CODES = frozenset(
    {
        "unknown",
        "usage",
        "nosock",
        "inuse",
        "refused",
        "unreachable",
        "timeout",
        "reset",
        "closed",
        "unsupported",
        "nomem",
        "internal",
    }
)
OPTIONS = ("nodelay", "keepalive", "keepidle", "keepintvl", "keepcnt", "read")
_BOOL_OPTIONS = frozenset({"nodelay", "keepalive", "read"})
STATUS_ERRORS = frozenset({"none", "reset", "timeout", "refused"})


class AgentFailure(Exception):
    """A command failed: becomes ``err CODE TEXT``. Backends raise it with a spec code."""

    def __init__(self, code: str, text: str = "") -> None:
        if code not in ERROR_CODES:
            text = f"{code}: {text}" if text else code
            code = "internal"
        self.code = code
        self.text = text
        super().__init__(f"{code} {text}".strip())


# ----------------------------------------------------------------------------- patterns


class Pattern:
    """A send pattern; :meth:`take` gives the bytes at a stream offset.

    The offset is the connection's send stream offset (all bytes ``send`` gave the stack so
    far), for every pattern: ``seq`` byte *k* is *k* mod 256, a ``hex:`` unit repeats with
    period ``len(unit)`` along the stream -- the same as ``client.pattern_bytes``.
    """

    def __init__(self, name: str, unit: bytes | None) -> None:
        self.name = name
        self.unit = unit  # None: zeros
        # A long run of the unit, so that most writes are one slice, not a join.
        if unit is not None:
            self._run = unit * (WRITE_PIECE // len(unit) + 2)

    @classmethod
    def parse(cls, text: str) -> Pattern:
        """``seq``, ``zero`` or ``hex:HEX``; :class:`AgentFailure` ``usage`` otherwise."""
        if text == "seq":
            return cls("seq", bytes(range(256)))
        if text == "zero":
            return cls("zero", None)
        if text.startswith("hex:"):
            digits = text[4:]
            if digits and len(digits) % 2 == 0 and all(c in string.hexdigits for c in digits):
                return cls(text, bytes.fromhex(digits))
        raise AgentFailure("usage", f"bad pattern {text!r}: seq, zero or hex:HEX (whole bytes)")

    def take(self, offset: int, n: int) -> bytes:
        if self.unit is None:
            return bytes(n)
        size = len(self.unit)
        start = offset % size
        if start + n <= len(self._run):
            return self._run[start : start + n]
        return (self.unit * ((start + n) // size + 1))[start : start + n]


# ----------------------------------------------------------------------------- backends


class BackendConn(ABC):
    """One connection of the stack under the agent. Every call must return at once."""

    local: tuple[str, int] = ("", 0)
    remote: tuple[str, int] = ("", 0)

    def check_connected(self) -> bool:
        """An active open: True once established; :class:`AgentFailure` if it failed."""
        return True

    @abstractmethod
    def read(self, max_bytes: int) -> bytes | None:
        """Consume up to ``max_bytes``: data, ``b""`` at the peer's FIN, None if nothing now;
        :class:`AgentFailure` (``reset``, ``timeout``) when the connection failed."""

    @abstractmethod
    def write(self, data: bytes) -> int:
        """Hand ``data`` to the stack; how many bytes it accepted (0: full, try later)."""

    @abstractmethod
    def shutdown(self, how: str) -> None:
        """``wr``, ``rd`` or ``rdwr``. After ``rd``, :meth:`read` reports EOF."""

    @abstractmethod
    def close(self) -> None:
        """Graceful close; the handle is gone afterwards."""

    @abstractmethod
    def abort(self) -> None:
        """Reset; the handle is gone afterwards."""

    @abstractmethod
    def state(self) -> str:
        """RFC 9293 state name (``ESTABLISHED``, ``CLOSE-WAIT``, ...) or ``unknown``."""

    @abstractmethod
    def error(self) -> str | None:
        """``reset``, ``timeout``, ``refused`` if the connection failed, else None."""

    @abstractmethod
    def setopt(self, name: str, value: int) -> None:
        """``nodelay``, ``keepalive``, ``keepidle`` (ms), ``keepintvl`` (ms), ``keepcnt``;
        values are validated already. Raise ``unsupported`` for one the stack lacks."""


class BackendListener(ABC):
    @abstractmethod
    def accept(self) -> BackendConn | None:
        """An established connection from the queue, or None."""

    @abstractmethod
    def close(self) -> None: ...


class Backend(ABC):
    @abstractmethod
    def hello(self) -> dict[str, str]:
        """At least ``stack`` and ``version``; more ``key=value`` words are allowed."""

    @abstractmethod
    def info(self) -> dict[str, str]: ...

    @abstractmethod
    def listen(self, port: int, backlog: int | None) -> BackendListener:
        """IPv4 and IPv6, any address. ``inuse`` if the port is taken."""

    @abstractmethod
    def connect(self, addr: str, port: int) -> BackendConn:
        """Start an active open (non-blocking); :meth:`BackendConn.check_connected` ends it."""

    @abstractmethod
    def counters(self) -> dict[str, int]:
        """At least ``connections``, ``buffers``, ``drops``."""


# ----------------------------------------------------------------------------- the core


@dataclass(eq=False)
class Conn:
    """The agent's view of one connection (a ``cid``)."""

    cid: int
    sock: BackendConn
    sent: int = 0  # send stream offset
    received: int = 0
    crc: int = 0
    eof: bool = False
    error: str | None = None
    reading: bool = True
    wr_shut: bool = False

    @property
    def consuming(self) -> bool:
        return self.reading and not self.eof and self.error is None


@dataclass(eq=False)
class Listen:
    sid: int
    sock: BackendListener


Interest = tuple[object, bool, bool]
"""(backend object, wants readable, wants writable): what an fd-based driver should watch."""


@dataclass(eq=False)
class Pending:
    """A deferred command: ``step`` returns the reply once done, ``expire`` at the deadline."""

    command: str
    step: Callable[[int], str | None]
    expire: Callable[[], str]
    deadline: int | None = None
    interest: Interest | None = None
    error_suffix: Callable[[], str] | None = None  # appended to an err reply (recv: total=T)
    cancel: Callable[[], None] | None = None  # undo what the command started (connect)


class AgentCore:
    """One agent session on one console.

    ``emit`` receives each output line without its newline; ``clock`` gives microseconds.
    ``log`` (optional) receives lines meant for people: marks and internal errors.
    """

    def __init__(
        self,
        backend: Backend,
        emit: Callable[[str], None],
        clock: Callable[[], int],
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.backend = backend
        self.emit = emit
        self.clock = clock
        self.log = log
        self.conns: dict[int, Conn] = {}
        self.listeners: dict[int, Listen] = {}
        self.pending: Pending | None = None
        self._next_handle = 1
        self._inbuf = bytearray()
        self._discarding = False  # inside an over-long line: drop up to its newline
        self._again = False  # a step stopped on its budget: poll again at once
        self._now = 0
        self._handlers: dict[str, Callable[[list[str]], str | Pending]] = {
            "hello": self._hello,
            "help": self._help,
            "info": self._info,
            "listen": self._listen,
            "accept": self._accept,
            "connect": self._connect,
            "send": self._send,
            "recv": self._recv,
            "shutdown": self._shutdown,
            "close": self._close,
            "abort": self._abort,
            "status": self._status,
            "setopt": self._setopt,
            "counters": self._counters,
            "mark": self._mark,
            "reset": self._reset,
        }

    # -- driver interface -----------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Console input. Lines are executed at once unless a command is pending."""
        self._inbuf += data
        self._drain()

    def poll(self, now: int | None = None) -> None:
        """Consume received data, advance the pending command, then run queued lines."""
        self._now = self.clock() if now is None else now
        self._again = False
        self._consume()
        if self.pending is not None:
            self._advance()
        self._drain()

    def poll_at(self) -> int | None:
        """When :meth:`poll` must run at the latest (µs), or None: only on events."""
        if self._again:
            return self._now
        return self.pending.deadline if self.pending is not None else None

    def interest(self) -> list[Interest]:
        """Which backend objects an fd-based driver should wait on, and for what."""
        want: dict[int, Interest] = {}
        for conn in self.conns.values():
            if conn.consuming:
                want[id(conn.sock)] = (conn.sock, True, False)
        p = self.pending
        if p is not None and p.interest is not None:
            obj, r, w = p.interest
            old = want.get(id(obj))
            if old is not None:
                r, w = r or old[1], w or old[2]
            want[id(obj)] = (obj, r, w)
        return list(want.values())

    # -- lines ----------------------------------------------------------------------------

    def _drain(self) -> None:
        buf = self._inbuf
        while self.pending is None and buf:
            nl = buf.find(b"\n")
            if self._discarding:
                if nl < 0:
                    buf.clear()
                    return
                del buf[: nl + 1]
                self._discarding = False
                continue
            if nl < 0:
                if len(buf) >= MAX_LINE:  # even with its newline it would be too long
                    buf.clear()
                    self._discarding = True
                    self._reply_err("usage", f"line longer than {MAX_LINE} bytes")
                return
            raw = bytes(buf[:nl])
            del buf[: nl + 1]
            if len(raw) + 1 > MAX_LINE:
                self._reply_err("usage", f"line longer than {MAX_LINE} bytes")
                continue
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            text = raw.decode("ascii", "replace")
            if text.strip():
                self._execute(text)

    def _execute(self, text: str) -> None:
        words = text.split()
        handler = self._handlers.get(words[0])
        if handler is None:
            self._reply_err("unknown", f"no command {words[0]!r}; try help")
            return
        self._now = self.clock()
        try:
            result = handler(words[1:])
        except AgentFailure as exc:
            self._reply_err(exc.code, exc.text)
            return
        except Exception as exc:  # a backend bug must not kill the console
            self._internal(text, exc)
            return
        if isinstance(result, Pending):
            self.pending = result
            self._consume()
            self._advance()
        else:
            self._reply(result)

    def _advance(self) -> None:
        p = self.pending
        assert p is not None
        try:
            reply = p.step(self._now)
        except AgentFailure as exc:
            suffix = p.error_suffix() if p.error_suffix is not None else ""
            text = " ".join(x for x in (exc.text, suffix) if x)
            self.pending = None
            self._reply_err(exc.code, text)
            return
        except Exception as exc:
            self.pending = None
            self._internal(p.command, exc)
            return
        if reply is None and p.deadline is not None and self._now >= p.deadline:
            reply = p.expire()
        if reply is not None:
            self.pending = None
            self._reply(reply)

    def _reply(self, reply: str) -> None:
        self.emit(reply)

    def _reply_err(self, code: str, text: str = "") -> None:
        text = " ".join(text.split())  # one line, single spaces
        self.emit(f"err {code} {text}" if text else f"err {code}")

    def _internal(self, command: str, exc: Exception) -> None:
        if self.log is not None:
            self.log(f"agent: {command!r} failed: {exc!r}")
        self._reply_err("internal", f"{type(exc).__name__}: {exc}")

    # -- data -----------------------------------------------------------------------------

    def _consume(self) -> None:
        for conn in self.conns.values():
            self._consume_one(conn)

    def _consume_one(self, conn: Conn) -> None:
        budget = READ_BUDGET
        while conn.consuming and budget > 0:
            try:
                data = conn.sock.read(min(budget, 256 * 1024))
            except AgentFailure as exc:
                conn.error = exc.code if exc.code in STATUS_ERRORS else "reset"
                return
            if data is None:
                return
            if not data:
                conn.eof = True
                return
            conn.received += len(data)
            conn.crc = zlib.crc32(data, conn.crc)
            budget -= len(data)
        if budget <= 0:
            self._again = True

    # -- argument parsing -----------------------------------------------------------------

    @staticmethod
    def _arity(args: list[str], lo: int, hi: int, usage: str) -> None:
        if not lo <= len(args) <= hi:
            raise AgentFailure("usage", usage)

    @staticmethod
    def _uint(word: str, what: str, lo: int = 0, hi: int | None = None) -> int:
        if not word.isdigit() or not word.isascii():
            raise AgentFailure("usage", f"{what} must be an unsigned decimal number, not {word!r}")
        value = int(word)
        if value < lo or (hi is not None and value > hi):
            bound = f"{lo}-{hi}" if hi is not None else f">= {lo}"
            raise AgentFailure("usage", f"{what} must be {bound}, not {value}")
        return value

    def _conn(self, word: str) -> Conn:
        cid = self._uint(word, "CID")
        conn = self.conns.get(cid)
        if conn is None:
            raise AgentFailure("nosock", f"no connection {cid}")
        return conn

    def _deadline(self, args: list[str], index: int) -> int:
        ms = self._uint(args[index], "TIMEOUT_MS") if len(args) > index else DEFAULT_TIMEOUT_MS
        return self._now + ms * 1000

    def _handle(self) -> int:
        h = self._next_handle
        self._next_handle += 1
        return h

    def _register(self, sock: BackendConn) -> Conn:
        conn = Conn(self._handle(), sock)
        self.conns[conn.cid] = conn
        self._consume_one(conn)
        return conn

    # -- commands -------------------------------------------------------------------------

    def _hello(self, args: list[str]) -> str:
        self._arity(args, 0, 0, "hello")
        info = dict(self.backend.hello())
        stack = info.pop("stack", "unknown")
        version = info.pop("version", "unknown")
        words = [f"agent={PROTOCOL}", f"stack={_word(stack)}", f"version={_word(version)}"]
        words += [f"{k}={_word(v)}" for k, v in info.items() if k != "agent"]
        return "ok " + " ".join(words)

    def _help(self, args: list[str]) -> str:
        self._arity(args, 0, 0, "help")
        return "ok " + " ".join(COMMANDS)

    def _info(self, args: list[str]) -> str:
        self._arity(args, 0, 0, "info")
        return _kv_reply(self.backend.info())

    def _listen(self, args: list[str]) -> str:
        self._arity(args, 1, 2, "listen PORT [BACKLOG]")
        port = self._uint(args[0], "PORT", 1, 65535)
        backlog = self._uint(args[1], "BACKLOG", 0, 65535) if len(args) > 1 else None
        sock = self.backend.listen(port, backlog)
        lst = Listen(self._handle(), sock)
        self.listeners[lst.sid] = lst
        return f"ok {lst.sid}"

    def _accept(self, args: list[str]) -> Pending:
        self._arity(args, 1, 2, "accept SID [TIMEOUT_MS]")
        sid = self._uint(args[0], "SID")
        deadline = self._deadline(args, 1)
        lst = self.listeners.get(sid)
        if lst is None:
            raise AgentFailure("nosock", f"no listener {sid}")

        def step(now: int) -> str | None:
            sock = lst.sock.accept()
            if sock is None:
                return None
            conn = self._register(sock)
            return f"ok {conn.cid} {sock.remote[0]} {sock.remote[1]}"

        return Pending("accept", step, lambda: "err timeout", deadline, (lst.sock, True, False))

    def _connect(self, args: list[str]) -> Pending:
        self._arity(args, 2, 3, "connect ADDR PORT [TIMEOUT_MS]")
        try:
            addr = ipaddress.ip_address(args[0])
        except ValueError:
            raise AgentFailure("usage", f"not an IPv4 or IPv6 address: {args[0]!r}") from None
        port = self._uint(args[1], "PORT", 1, 65535)
        deadline = self._deadline(args, 2)
        sock = self.backend.connect(str(addr), port)

        def step(now: int) -> str | None:
            try:
                if not sock.check_connected():
                    return None
            except AgentFailure:
                sock.abort()
                raise
            conn = self._register(sock)
            return f"ok {conn.cid} {sock.local[0]} {sock.local[1]}"

        def expire() -> str:
            sock.abort()
            return "err timeout"

        return Pending("connect", step, expire, deadline, (sock, False, True), cancel=sock.abort)

    def _send(self, args: list[str]) -> str | Pending:
        self._arity(args, 2, 4, "send CID N [PATTERN] [CHUNK]")
        n = self._uint(args[1], "N")
        pattern = Pattern.parse(args[2]) if len(args) > 2 else Pattern.parse("seq")
        chunk = self._uint(args[3], "CHUNK", 1) if len(args) > 3 else None
        conn = self._conn(args[0])
        if conn.wr_shut:
            raise AgentFailure("closed", "this side was shut down for writing")
        if conn.error is not None:
            raise AgentFailure(conn.error, "the connection failed")
        left = n
        piece_left = 0  # with CHUNK: what remains of the current write

        def step(now: int) -> str | None:
            nonlocal left, piece_left
            budget = WRITE_BUDGET
            while left > 0:
                if budget <= 0:
                    self._again = True
                    return None
                if chunk is not None:
                    if piece_left == 0:
                        piece_left = min(chunk, left)
                    size = piece_left
                else:
                    size = min(left, WRITE_PIECE)
                try:
                    k = conn.sock.write(pattern.take(conn.sent, size))
                except AgentFailure as exc:
                    if exc.code in STATUS_ERRORS:
                        conn.error = exc.code
                    raise
                conn.sent += k
                left -= k
                budget -= k
                if k > 0:  # progress: the stall timer starts over
                    pending.deadline = now + SEND_STALL_US
                if chunk is not None:
                    piece_left -= k
                if k < size:
                    return None  # the stack is full: wait until it takes more
                if chunk is not None and left > 0:
                    # One chunk is one application write: let the stack offer it to the wire
                    # before the next (a sans-IO stack sends only between polls), so Nagle or
                    # its absence decides what a segment carries, as for a socket write.
                    self._again = True
                    return None
            return f"ok {n}"

        def stalled() -> str:
            return f"err timeout sent={n - left}"

        pending = Pending(
            "send", step, stalled, self._now + SEND_STALL_US, (conn.sock, False, True)
        )
        return pending

    def _recv(self, args: list[str]) -> Pending:
        self._arity(args, 2, 3, "recv CID N [TIMEOUT_MS]")
        n = self._uint(args[1], "N")
        deadline = self._deadline(args, 2)
        conn = self._conn(args[0])

        def step(now: int) -> str | None:
            if conn.received >= n or conn.eof:
                return f"ok total={conn.received} crc32={conn.crc:08x} eof={int(conn.eof)}"
            if conn.error is not None:
                raise AgentFailure(conn.error, "the connection failed")
            return None

        return Pending(
            "recv",
            step,
            lambda: f"err timeout total={conn.received}",
            deadline,
            None,
            lambda: f"total={conn.received}",
        )

    def _shutdown(self, args: list[str]) -> str:
        self._arity(args, 1, 2, "shutdown CID [wr|rd|rdwr]")
        how = args[1] if len(args) > 1 else "wr"
        if how not in ("wr", "rd", "rdwr"):
            raise AgentFailure("usage", f"shutdown takes wr, rd or rdwr, not {how!r}")
        conn = self._conn(args[0])
        conn.sock.shutdown(how)
        if how != "rd":
            conn.wr_shut = True
        if how != "wr":
            self._consume_one(conn)
        return "ok"

    def _close(self, args: list[str]) -> str:
        self._arity(args, 1, 1, "close CID|SID")
        handle = self._uint(args[0], "handle")
        conn = self.conns.pop(handle, None)
        if conn is not None:
            self._consume_one(conn)  # what already arrived is consumed, as a reading app does
            conn.sock.close()
            return "ok"
        lst = self.listeners.pop(handle, None)
        if lst is not None:
            lst.sock.close()
            return "ok"
        raise AgentFailure("nosock", f"no connection or listener {handle}")

    def _abort(self, args: list[str]) -> str:
        self._arity(args, 1, 1, "abort CID")
        conn = self._conn(args[0])
        del self.conns[conn.cid]
        conn.sock.abort()
        return "ok"

    def _status(self, args: list[str]) -> str:
        self._arity(args, 1, 1, "status CID")
        conn = self._conn(args[0])
        self._consume_one(conn)
        error = conn.error or conn.sock.error()
        if error is not None and error not in STATUS_ERRORS:
            error = "reset"
        return (
            f"ok state={_word(conn.sock.state())} sent={conn.sent} received={conn.received} "
            f"eof={int(conn.eof)} error={error or 'none'}"
        )

    def _setopt(self, args: list[str]) -> str:
        self._arity(args, 3, 3, "setopt CID NAME VALUE")
        self._uint(args[0], "CID")
        value = self._uint(args[2], "VALUE")
        conn = self._conn(args[0])
        name = args[1]
        if name not in OPTIONS:
            raise AgentFailure("unsupported", f"no option {name!r}; options: {', '.join(OPTIONS)}")
        if name in _BOOL_OPTIONS and value > 1:
            raise AgentFailure("usage", f"{name} takes 0 or 1")
        if name not in _BOOL_OPTIONS and value < 1:
            raise AgentFailure("usage", f"{name} must be >= 1")
        if name == "read":
            conn.reading = bool(value)
            self._consume_one(conn)
        else:
            conn.sock.setopt(name, value)
        return "ok"

    def _counters(self, args: list[str]) -> str:
        self._arity(args, 0, 0, "counters")
        values = self.backend.counters()
        first = {k: values.get(k, 0) for k in ("connections", "buffers", "drops")}
        rest = {k: v for k, v in values.items() if k not in first}
        return _kv_reply({k: str(v) for k, v in {**first, **rest}.items()})

    def _mark(self, args: list[str]) -> str:
        self._arity(args, 1, 64, "mark TEXT...")
        text = " ".join(args)
        if self.log is not None:
            self.log(f"mark t={self._now / 1e6:.6f} {text}")
        return f"ok {text}"

    def _reset(self, args: list[str]) -> str:
        self._arity(args, 0, 0, "reset")
        self.close_all()
        return "ok"

    def close_all(self) -> None:
        """``reset`` without a reply (the console went away): abort every connection, close
        every listener, drop a pending command."""
        if self.pending is not None and self.pending.cancel is not None:
            self.pending.cancel()
        self.pending = None
        conns, self.conns = self.conns, {}
        listeners, self.listeners = self.listeners, {}
        for conn in conns.values():
            conn.sock.abort()
        for lst in listeners.values():
            lst.sock.close()


def _word(value: object) -> str:
    """A value as one protocol word: whitespace becomes commas, booleans 1/0, None ``none``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if value is None:
        return "none"
    text = ",".join(str(value).split())
    return text or "-"


def _kv_reply(values: dict[str, str]) -> str:
    words = [f"{_word(k)}={_word(v)}" for k, v in values.items()]
    return "ok " + " ".join(words) if words else "ok"
