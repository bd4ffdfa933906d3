"""The tcp-hil keyword library for Robot Framework: a lab's targets as keywords.

Lab engineers who write their tests in Robot Framework get the same objects as the pytest plugin
(:mod:`harness.session`): the keywords here are thin adapters that turn Robot arguments into
calls on :class:`~harness.session.HilSession` and :class:`~harness.session.LabTarget`, so a
keyword and a fixture behave alike and fail with the same message. What is Robot's own -- a
test's life cycle, its log -- lives in :class:`Listener`: every test gets a
:class:`~harness.session.TestRecord`, and its pcaps and the observations it read are linked from
the test in ``log.html``.
"""

from __future__ import annotations

import contextlib
import html
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robot.api import SkipExecution, logger
from robot.libraries.BuiltIn import BuiltIn, RobotNotRunningError

from harness.probes.livewire import LinkRecorder
from harness.probes.observe import Observation, Value
from harness.session import (
    Connection,
    ExpectationFailed,
    HilSession,
    LabTarget,
    SessionError,
    TestRecord,
    feature_key,
    safe_name,
    show,
)

__all__ = ["Listener", "TcpHil"]

_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}


def _size(text: int | str) -> int:
    """``1 MiB``, ``64 KiB``, ``1000`` or ``1 MB`` as a byte count."""
    if isinstance(text, int):
        return text
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]i?[bB]|[bB])?\s*", text)
    if not found:
        raise SessionError(f"size {text!r}: give a number of bytes, e.g. 1000, 64 KiB or 1 MiB")
    return int(float(found.group(1)) * _UNITS[(found.group(2) or "").lower()])


def _bytes(data: bytes | str) -> bytes:
    return data if isinstance(data, bytes) else data.encode("utf-8")


@dataclass
class _Scope:
    """What a test (or a suite outside its tests) opened: closed when it ends."""

    record: TestRecord | None = None
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    captures: dict[str, LinkRecorder] = field(default_factory=dict)
    connections: list[Connection] = field(default_factory=list)


class TcpHil:
    """Keywords for tests against the targets of a tcp-hil lab: connections to their services,
    catalogue probes and the features they observe, with every test's pcaps in the log.

    = Using the library =

    In a suite's or resource file's settings:

    | Library    harness.robotlib.TcpHil    lab=${CURDIR}/lab.yaml    targets=linux,lwip

    - ``lab``: the lab file (``hil lab schema``, ``docs/lab.md``); relative paths are relative to
      the directory Robot was started in. Default ``lab.yaml``.
    - ``targets``: the targets to use, separated by commas or spaces (default: every target of
      the lab file).
    - ``out``: where pcaps, probe observations and the lab's logs go. Default ``hil`` in Robot's
      output directory (``${OUTPUT DIR}/hil``), so the links in ``log.html`` keep working when
      the output directory is copied or archived. The layout is that of a ``hil run`` bundle
      (``<out>/<target>/observations/``, ``pcaps/``, ``build.json``), plus
      ``<out>/tests/<suite>/<test>/<target>/`` for what each test recorded.
    - ``budget``: seconds a catalogue probe may take before it is abandoned.
    - ``prior``: a ``hil run`` bundle whose observations `Skip Unless Target Has` may consult.

    The library has GLOBAL scope: import it with the same arguments in every suite (a shared
    resource file does that) and every suite uses the same lab, brought up once.

    = The lab's life cycle =

    `Bring Lab Up` in the top suite's setup brings the chosen targets up (needs root: network
    namespaces and links); `Bring Lab Down` in its teardown takes them down. Whatever happens --
    a failing setup, Ctrl-C, a missing teardown -- the lab is also taken down when the run ends.
    A keyword that needs a target brings the lab up itself, so a single suite file runs alone
    too.

    = What a test records =

    Every test gets a directory ``<out>/tests/<suite>/<test>/``. `Open Connection To` starts a
    capture of the target's link that lasts until the end of the test; raw probes write their own
    pcaps. When the test ends, its connections are closed, its captures stopped, and the log gets
    links to every pcap of the test (relative to the log file, so they open from ``log.html``)
    and a table of the observations the test read.

    = Failure messages =

    A failed check names the target, the step or probe (with the address family), the expected
    and the observed value, and the pcap to open (with the frames for a probe's evidence), e.g.:

    | lwip: sack_permitted (probe P1, ipv4): expected True, observed False (deviates: ...).
    | Open /.../hil/lwip/pcaps/P1-ipv4.pcapng frames 1-2

    (one line in the log). A connection's check names the step and the test's capture:

    | linux: expect 5 B on echo over ipv6 to [2001:db8:77:1::2]:7 (stream offset 0):
    | expected b'hello' (5 B), observed b'hellx' (5 B within 0.00 s, first difference at byte 4).
    | Open /.../hil/tests/Robot.Interop_Echo/Echo/linux/linux.pcapng

    = Feature values =

    Feature keys are those of ``hil probe --list`` (``sack_permitted``, ``window_scale``,
    ``delayed_ack_ms``, ...) or the aliases ``sack``, ``wscale``/``ws``, ``ts`` and ``delack``.
    An expected value is converted in this order: a whole number (``250``), a number
    (``40.5``), a Boolean (``True``/``False``, ``yes``/``no``, ``on``/``off``), then ``None``;
    any other text is compared as text.

    = Data =

    Data given as text is sent as its UTF-8 encoding; for other bytes give a bytes value, e.g.
    from ``Convert To Bytes    00 ff    hex`` of BuiltIn. Sizes are byte counts: ``1000``,
    ``64 KiB``, ``1 MiB``, ``1 MB``.
    """

    ROBOT_LIBRARY_SCOPE = "GLOBAL"
    ROBOT_LIBRARY_DOC_FORMAT = "ROBOT"
    ROBOT_LIBRARY_VERSION = "0.1.0"

    def __init__(
        self,
        lab: str = "lab.yaml",
        targets: str | list[str] = "",
        out: str = "",
        budget: float = 60.0,
        prior: str = "",
    ) -> None:
        """Nothing is loaded or brought up here: a bad lab file fails `Bring Lab Up` (or the
        first keyword that needs the lab) with the file, the line and the fix."""
        self._lab = Path(lab)
        if isinstance(targets, str):
            targets = targets.replace(",", " ").split()
        self._targets = [str(t) for t in targets]
        self._out = Path(out) if out else None
        self._budget = budget
        self._prior = Path(prior) if prior else None
        self._session: HilSession | None = None
        self._scopes: list[tuple[str, _Scope]] = []  # (suite or test id, scope), innermost last
        self._fallback = _Scope()  # anything opened before the first suite started
        self.ROBOT_LIBRARY_LISTENER = Listener(self)

    # -- the session ---------------------------------------------------------------------

    def _out_dir(self) -> Path:
        return (self._out or _robot_dir("${OUTPUT DIR}") / "hil").resolve()

    @property
    def session(self) -> HilSession:
        if self._session is None:
            self._session = HilSession(
                self._lab.resolve(), self._out_dir(), self._targets, self._budget, self._prior
            )
        return self._session

    def _scope(self) -> _Scope:
        return self._scopes[-1][1] if self._scopes else self._fallback

    def _record(self) -> TestRecord | None:
        return self._scope().record

    def _target(self, name: str) -> LabTarget:
        """The target, the lab brought up if need be, recording for the running test."""
        t = self.session.target(name)
        record = self._record()
        if record is not None and t.record is not record:
            t.begin(record)
        return t

    def _connection(self, connection: Connection | None) -> Connection:
        if connection is not None:
            return connection
        for _, scope in reversed(self._scopes or [("", self._fallback)]):
            if scope.connections:
                return scope.connections[-1]
        raise SessionError("no connection is open; use Open Connection To first")

    # -- keywords: the lab ---------------------------------------------------------------

    def bring_lab_up(self) -> list[str]:
        """Brings the lab's chosen targets up (once; later calls only return) and returns
        their names, for loops over every target.

        Needs root. Fails with the lab file's problem (file, line, fix) or with the target that
        did not come up and why; what came up is taken down again.

        | @{targets}=    Bring Lab Up
        """
        session = self.session
        if session.is_up:
            return list(session.names)
        t0 = time.monotonic()
        session.up()
        rows = [
            (n, t.stack, ", ".join(t.addresses.values()),
             ", ".join(f"{k}:{v}" for k, v in t.services.items()))
            for n, t in session.targets.items()
        ]  # fmt: skip
        logger.info(
            f"{session.lab_path}: {', '.join(session.names)} up in {time.monotonic() - t0:.1f} s; "
            f"output in {session.out}<br>"
            + _table(("target", "stack", "addresses", "services"), rows),
            html=True,
        )
        record = self._record()
        if record is not None:  # brought up inside a test: record it from now on
            for t in session.targets.values():
                t.begin(record)
        return list(session.names)

    def bring_lab_down(self) -> None:
        """Takes the lab down: stops the targets and removes their namespaces and links.

        Connections and captures still open are closed first. The lab also goes down at the end
        of the run without this keyword.
        """
        for _, scope in reversed(self._scopes):
            _close_scope(scope)
        _close_scope(self._fallback)
        if self._session is not None:
            self._session.down()

    # -- keywords: connections -----------------------------------------------------------

    def open_connection_to(
        self, target: str, service: str = "echo", family: str = "ipv4", timeout: float = 5.0
    ) -> Connection:
        """Opens a TCP connection from the tester to ``service`` of ``target`` and makes it the
        current connection; returns it too, for tests that hold several.

        ``service`` is a service name of the lab file (``echo``, ``discard``, ``chargen``) or a
        port number; ``family`` is ``ipv4`` or ``ipv6`` (``4``/``6``). Also starts a capture of
        the target's link that lasts until the end of the test (one per target and test).
        Connections are closed when the test ends.

        | Open Connection To    lwip    echo    ipv6
        | Send And Expect    hello
        """
        t = self._target(target)
        scope = self._scope()
        if target not in scope.captures:
            scope.captures[target] = scope.stack.enter_context(t.capture())
            if scope.record is not None:
                scope.record.captures[target] = scope.captures[target]
        conn = scope.stack.enter_context(t.connect(service, family, timeout))
        scope.connections.append(conn)
        logger.info(f"{t.name}: connected, {conn.where}")
        return conn

    def send_data(self, data: bytes | str, connection: Connection | None = None) -> None:
        """Sends ``data`` on the current connection (or on ``connection``)."""
        conn = self._connection(connection)
        conn.send(_bytes(data))

    def expect_data(
        self, data: bytes | str, timeout: float = 5.0, connection: Connection | None = None
    ) -> bytes:
        """Reads as many bytes as ``data`` has, for at most ``timeout`` seconds, and fails
        unless they equal ``data``; the message shows what did arrive and where it first
        differs."""
        conn = self._connection(connection)
        return conn.expect(_bytes(data), timeout)

    def send_and_expect(
        self, data: bytes | str, timeout: float = 5.0, connection: Connection | None = None
    ) -> bytes:
        """Sends ``data`` and expects the same bytes back: an echo round trip."""
        conn = self._connection(connection)
        payload = _bytes(data)
        conn.send(payload)
        return conn.expect(payload, timeout)

    def receive_data(
        self, size: int | str, timeout: float = 5.0, connection: Connection | None = None
    ) -> bytes:
        """Reads up to ``size`` bytes within ``timeout`` seconds and returns them: fewer if
        the target closes or the time is up (check the length where it matters).

        | Open Connection To    linux    chargen
        | ${data}=    Receive Data    64 KiB
        | Length Should Be    ${data}    65536
        """
        conn = self._connection(connection)
        return conn.receive(_size(size), timeout)

    def send_bytes(
        self, size: int | str = "1 MiB", seed: int = 0, connection: Connection | None = None
    ) -> bytes:
        """Sends ``size`` pseudo-random bytes (the same bytes for the same ``seed``) and
        returns them."""
        conn = self._connection(connection)
        data = random.Random(seed).randbytes(_size(size))
        conn.send(data)
        return data

    def send_bytes_and_expect_echo(
        self,
        size: int | str = "1 MiB",
        timeout: float = 60.0,
        seed: int = 0,
        connection: Connection | None = None,
    ) -> None:
        """Sends ``size`` pseudo-random bytes while reading the echo, and fails unless the
        echo is the same bytes within ``timeout`` seconds (the integrity of a larger transfer).

        Sending and reading overlap, so a target with a small window echoes while the rest is
        still being sent. The log gives the throughput.
        """
        conn = self._connection(connection)
        data = random.Random(seed).randbytes(_size(size))
        failed: list[BaseException] = []

        def send() -> None:
            try:
                conn.send(data)
            except BaseException as exc:
                failed.append(exc)

        t0 = time.monotonic()
        sender = threading.Thread(target=send, name="hil-echo-send", daemon=True)
        sender.start()
        try:
            conn.expect(data, timeout)
        except ExpectationFailed:
            sender.join(1.0)
            if failed:
                raise failed[0] from None  # the send's failure is the cause
            raise
        sender.join(timeout)
        if failed:
            raise failed[0]
        took = time.monotonic() - t0
        logger.info(
            f"{conn.target.name}: {len(data)} B echoed intact on {conn.where} in {took:.2f} s "
            f"({len(data) * 8 / max(took, 1e-6) / 1e6:.1f} Mbit/s)"
        )

    def close_connection(self, connection: Connection | None = None) -> None:
        """Closes the current connection (or ``connection``); the one opened before it becomes
        current again."""
        conn = self._connection(connection)
        conn.close()
        for _, scope in [*self._scopes, ("", self._fallback)]:
            if conn in scope.connections:
                scope.connections.remove(conn)

    # -- keywords: probes and features ---------------------------------------------------

    def run_probe(self, target: str, *probes: str) -> list[Observation]:
        """Runs catalogue probes on ``target`` (``hil probe --list``), each once per run, and
        returns their observations; the log gets them as a table with links to the evidence.

        A probe already run (by this keyword or to answer a feature keyword) is not run again.

        | ${observations}=    Run Probe    linux    P1    P8
        """
        t = self._target(target)
        t0 = time.monotonic()
        observations = t.probe(*probes)
        record = self._record()
        if record is not None:  # the test read them: list them with the test
            for obs in observations:
                record.observations.append((t.name, obs))
                if obs.evidence is not None and obs.evidence.pcap:
                    record.add_pcap(self.session.out / obs.evidence.pcap)
        logger.info(
            f"{t.name}: {', '.join(probes)} in {time.monotonic() - t0:.1f} s<br>"
            + self._observation_table([(t.name, o) for o in observations]),
            html=True,
        )
        return observations

    def get_feature(self, target: str, key: str, family: str = "") -> Value:
        """Returns the observed value of feature ``key`` on ``target`` (in ``family``, or in
        either), running the probe that observes it if no earlier probe did.

        ``None`` means the probe could not observe it.
        """
        t = self._target(target)
        obs = t.observed(key, family or None)
        self._log_observation(t, obs)
        return obs.value

    def feature_should_be(
        self,
        target: str,
        key: str,
        expected: int | float | bool | None,
        family: str = "",
    ) -> None:
        """Fails unless feature ``key`` of ``target`` has the value ``expected``.

        Numbers compare by value (``1460`` equals ``1460.0``), Booleans only with Booleans.
        Runs the probe that observes the feature if no earlier probe did.

        | Feature Should Be    lwip     sack_permitted    False
        | Feature Should Be    linux    mss_advertised    1440    family=ipv6
        """
        t = self._target(target)
        value: Value = expected
        obs = t.feature_should_be(key, value, family or None)
        self._log_observation(t, obs)

    def feature_should_be_within(
        self, target: str, key: str, low: float, high: float, family: str = ""
    ) -> None:
        """Fails unless feature ``key`` of ``target`` is a number in ``[low, high]``.

        | Feature Should Be Within    linux    delayed_ack_ms    1    200
        """
        t = self._target(target)
        obs = t.feature_should_be_within(key, low, high, family or None)
        self._log_observation(t, obs)

    def skip_unless_target_has(self, target: str, feature: str) -> None:
        """Skips the test when ``target``'s configuration, or an observation made so far (or
        in the ``prior`` bundle), says ``feature`` is absent.

        Nothing is measured: this is the configuration's and earlier probes' word. Use it at
        the start of a test that only makes sense with the feature.

        | Skip Unless Target Has    ${target}    sack
        """
        t = self._target(target)
        why = t.absent(feature)
        if why is not None:
            raise SkipExecution(f"needs {feature_key(feature)}: {why}")
        logger.info(f"{t.name}: nothing says {feature_key(feature)} is absent")

    def set_link_impairment(self, target: str, loss: str = "", delay: str = "") -> None:
        """Not available yet: always fails, saying what to use meanwhile.

        Loss and delay on a target's link come with the link-emulation fixture of a later
        tcp-hil release. Until then, impair the tester's side of the link with ``tc netem``
        (the failure message gives the command for the running lab), or drop and delay chosen
        segments with the raw peer's timeline DSL (``docs/timeline.md``).
        """
        asked = ", ".join(f"{k}={v}" for k, v in (("loss", loss), ("delay", delay)) if v)
        netem = " ".join(x for x in ("netem", f"loss {loss}" if loss else "",
                                     f"delay {delay}" if delay else "") if x)  # fmt: skip
        where = "the tester namespace of the target (hil-<target>-tester-<pid>) on tester0"
        dev = "tester0"
        if self._session is not None and target in self._session.targets:
            tester = self._session.targets[target].node.tester
            where, dev = f"namespace {tester.netns}", tester.ifname
            ns = f"ip netns exec {tester.netns} "
        else:
            ns = "ip netns exec <tester namespace> "
        raise NotImplementedError(
            f"Set Link Impairment ({target}{': ' + asked if asked else ''}): link emulation "
            "is not available yet; it comes with the link-emulation fixture of a later tcp-hil "
            f"release. Meanwhile impair the tester's side of the link ({where}) by hand: "
            f"'{ns}tc qdisc replace dev {dev} root {netem}' (it delays or drops what the "
            f"tester sends; remove it with '{ns}tc qdisc del dev {dev} root'), or drop and "
            "delay chosen segments with the raw peer's timeline DSL (docs/timeline.md)"
        )

    # -- logging -------------------------------------------------------------------------

    def _log_observation(self, t: LabTarget, obs: Observation) -> None:
        logger.info(self._observation_table([(t.name, obs)]), html=True)

    def _observation_table(self, rows: list[tuple[str, Observation]]) -> str:
        body = []
        for name, o in rows:
            evidence = ""
            if o.evidence is not None and o.evidence.pcap:
                link = self._link(self.session.out / o.evidence.pcap)
                frames = o.evidence.frames
                evidence = link + (f" frames {frames[0]}-{frames[-1]}" if frames else "")
            value = show(o.value, o.unit)
            body.append(
                [html.escape(x) for x in (name, o.key, o.family or "both", value, o.verdict,
                                          o.probe, o.detail)] + [evidence]
            )  # fmt: skip
        return _table(
            ("target", "feature", "family", "value", "verdict", "probe", "detail", "evidence"),
            body,
            escape=False,
        )

    def _link(self, path: Path) -> str:
        """An HTML link to ``path`` that works from Robot's log file."""
        base = _robot_dir("${LOG FILE}", parent=True)
        rel = os.path.relpath(path, base)
        name = html.escape(str(path.relative_to(self.session.out))
                           if path.is_relative_to(self.session.out) else str(path))  # fmt: skip
        missing = "" if path.exists() else " (missing)"
        return f'<a href="{html.escape(rel)}">{name}</a>{missing}'

    # -- the test life cycle (called by the Listener) ------------------------------------

    def _start_suite(self, suite_id: str) -> None:
        self._scopes.append((suite_id, _Scope()))

    def _end_suite(self, suite_id: str) -> None:
        while suite_id in (sid for sid, _ in self._scopes):
            sid, scope = self._scopes.pop()
            _close_scope(scope)
            if sid == suite_id:
                break

    def _start_test(self, test_id: str, suite: str, test: str) -> None:
        directory = self._out_dir() / "tests"
        record = TestRecord(f"{suite}.{test}", directory / safe_name(suite) / safe_name(test))
        self._scopes.append((test_id, _Scope(record)))
        if self._session is not None:
            for t in self._session.targets.values():
                t.begin(record)

    def _end_test(self, test_id: str) -> None:
        if not self._scopes or self._scopes[-1][0] != test_id:
            return
        _, scope = self._scopes.pop()
        _close_scope(scope)  # captures are complete before they are linked
        record = scope.record
        if self._session is not None:
            for t in self._session.targets.values():
                if t.record is record:
                    t.end()
        if record is None or not (record.pcaps or record.observations):
            return
        parts = []
        if record.pcaps:
            links = "".join(f"<li>{self._link(p)}</li>" for p in record.pcaps)
            parts.append(f"pcaps of this test:<ul>{links}</ul>")
        if record.observations:
            seen: list[tuple[str, Observation]] = []
            for item in record.observations:
                if item not in seen:
                    seen.append(item)
            parts.append("observations this test read:" + self._observation_table(seen))
        logger.info("".join(parts), html=True)

    def _close(self) -> None:
        """End of the run: whatever is still open is closed and the lab goes down."""
        for _, scope in reversed(self._scopes):
            _close_scope(scope)
        self._scopes.clear()
        _close_scope(self._fallback)
        if self._session is not None:
            self._session.down()


def _close_scope(scope: _Scope) -> None:
    scope.connections.clear()
    scope.captures.clear()
    scope.stack.close()
    scope.stack = contextlib.ExitStack()


def _robot_dir(variable: str, parent: bool = False) -> Path:
    """A directory Robot knows of (its output directory, the log file's directory); the
    current directory outside a Robot run."""
    try:
        value = BuiltIn().get_variable_value(variable)
    except RobotNotRunningError:
        value = None
    if not value or str(value).upper() == "NONE":
        if parent:
            return _robot_dir("${OUTPUT DIR}")
        return Path.cwd()
    path = Path(str(value))
    return path.parent if parent else path


def _table(head: tuple[str, ...], rows: list[Any], escape: bool = True) -> str:
    def cell(x: object, tag: str) -> str:
        text = html.escape(str(x)) if escape else str(x)
        return f"<{tag}>{text}</{tag}>"

    out = ['<table border="1" style="border-collapse:collapse">']
    out.append("<tr>" + "".join(cell(h, "th") for h in head) + "</tr>")
    out += ["<tr>" + "".join(cell(x, "td") for x in row) + "</tr>" for row in rows]
    return "".join(out) + "</table>"


class Listener:
    """The library's listener (Robot's listener API 3): one record per test, its pcaps and
    observations linked from the test in the log, and the lab down at the end of the run.

    Robot calls it for the suites that import the library, which is how it knows tests start
    and end; messages logged from ``end_test`` land in the test's body in ``output.xml`` (and so
    in ``rebot`` output too).
    """

    ROBOT_LISTENER_API_VERSION = 3

    def __init__(self, library: TcpHil) -> None:
        self.library = library

    def start_suite(self, data: Any, result: Any) -> None:
        self.library._start_suite(str(data.id))

    def end_suite(self, data: Any, result: Any) -> None:
        self.library._end_suite(str(data.id))

    def start_test(self, data: Any, result: Any) -> None:
        self.library._start_test(str(data.id), str(data.parent.full_name), str(data.name))

    def end_test(self, data: Any, result: Any) -> None:
        self.library._end_test(str(data.id))

    def close(self) -> None:
        self.library._close()
