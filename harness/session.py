"""A lab held for a test runner: the core the pytest plugin and the Robot library share.

Lab engineers write their own tests in pytest or Robot Framework; both runners drive the same
objects, so a keyword and a fixture behave alike and fail alike:

* :class:`HilSession` loads a lab file, brings the chosen targets up (the virtual lab, every
  target in namespaces of its own), hands out :class:`LabTarget` objects and tears the lab down,
  also when the runner is interrupted. Its output directory is laid out like a ``hil run``
  bundle (``<out>/<target>/observations/``, ``pcaps/``, ``build.json``), so probes run from a
  test land where ``hil report`` can render them.
* :class:`LabTarget` is one target: its addresses and services, kernel-socket connections from
  the tester (:class:`Connection`), the raw programmable peer (:meth:`LabTarget.timeline`),
  catalogue probes with their observations cached for the session, and what its configuration
  declares about on/off features.
* A :class:`TestRecord` collects what one test made (pcaps, observations it looked at), so a
  failure names the pcap to open and a runner can attach it to its report.
* :class:`ExpectationFailed` is the one failure message format: the target, the probe or step,
  expected and observed values, and the pcap to open.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.lab.load import load as load_lab
from harness.lab.virtual import LabUpError, Node, VirtualLab
from harness.probes import engine
from harness.probes import peer as peer_moves
from harness.probes.catalogue import PROBES
from harness.probes.figure2 import declared
from harness.probes.livewire import LinkRecorder
from harness.probes.observe import FEATURES, Observation, Value
from harness.probes.peer import reset
from harness.probes.timeline import Timeline, TimelineError

# Short names a test may use for feature keys in ``needs``.
ALIASES = {
    "sack": "sack_permitted",
    "wscale": "window_scale",
    "ws": "window_scale",
    "ts": "timestamps",
    "delack": "delayed_ack",
}


class SessionError(RuntimeError):
    """Something about the session's set-up a user fixes (lab file, target name, root)."""


class ExpectationFailed(AssertionError):
    """A check on a target failed; the message says where, what and which pcap to open."""

    ROBOT_SUPPRESS_NAME = True  # Robot shows the message alone, as for an assertion

    def __init__(
        self,
        target: str,
        step: str,
        expected: str,
        observed: str,
        pcaps: Sequence[str | Path] = (),
        detail: str = "",
    ) -> None:
        self.target, self.step = target, step
        self.expected, self.observed = expected, observed
        self.pcaps = [str(p) for p in pcaps]
        text = f"{target}: {step}: expected {expected}, observed {observed}"
        if detail:
            text += f" ({detail})"
        if self.pcaps:
            text += f". Open {'; '.join(self.pcaps)}"
        else:
            text += ". No pcap was recorded for this step (record the link: capture it)"
        super().__init__(text)


def feature_key(name: str) -> str:
    """The feature key for ``name`` (a key or an alias); a clear error lists the valid ones."""
    key = ALIASES.get(name, name)
    if key not in FEATURES:
        raise SessionError(
            f"unknown feature {name!r}; use a feature key ({', '.join(FEATURES)}) "
            f"or an alias ({', '.join(f'{a}={k}' for a, k in ALIASES.items())})"
        )
    return key


def show(value: Value, unit: str = "") -> str:
    if value is None:
        return "nothing (not observable)"
    if isinstance(value, bool):
        return str(value)
    return f"{value:g} {unit}".strip() if isinstance(value, float) else f"{value} {unit}".strip()


def safe_name(text: str) -> str:
    """A file-system name for a test id (``tests/test_x.py::test_y[lwip]``)."""
    return re.sub(r"[^\w.\-\[\]]+", "_", text).strip("_")[:150] or "test"


@dataclass
class TestRecord:
    """What one test made: its directory, the pcaps recorded for it, the observations it read."""

    __test__ = False  # not a pytest class

    name: str
    directory: Path
    pcaps: list[Path] = field(default_factory=list)
    observations: list[tuple[str, Observation]] = field(default_factory=list)  # (target, obs)
    captures: dict[str, LinkRecorder] = field(default_factory=dict)  # target -> running capture

    def add_pcap(self, path: Path) -> None:
        if path not in self.pcaps:
            self.pcaps.append(path)


class Connection:
    """A TCP connection from the tester's kernel to a target's service: send and expect data.

    Reading is by byte count with a deadline, so a short or wrong answer fails with what did
    arrive, when, and the pcap of the test.
    """

    def __init__(self, target: LabTarget, service: str, family: str, timeout_s: float) -> None:
        self.target = target
        self.family = family
        self.port = target.port(service)
        self.service = service if not service.isdigit() else f"port {service}"
        addr = target.address(family)
        self.where = f"{self.service} over {family} to [{addr}]:{self.port}"
        try:
            self.sock = target.node.tester.connect(addr, self.port, timeout=timeout_s)
        except OSError as exc:
            raise ExpectationFailed(
                target.name, f"connect to {self.where}", "a connection",
                f"{exc.strerror or exc}", target.pcaps(),
            ) from None  # fmt: skip
        self.sent = 0
        self.received = 0

    def send(self, data: bytes) -> None:
        __tracebackhide__ = True  # the failure is the message, not our frames
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ExpectationFailed(
                self.target.name, f"send {len(data)} B on {self.where}", "the send to succeed",
                f"{exc.strerror or exc} after {self.sent} B", self.target.pcaps(),
            ) from None  # fmt: skip
        self.sent += len(data)

    def receive(self, size: int, timeout_s: float = 5.0) -> bytes:
        """Up to ``size`` bytes, waiting at most ``timeout_s`` in all; fewer if the target
        closes or the time is up."""
        buf = bytearray()
        deadline = time.monotonic() + timeout_s
        while len(buf) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(min(size - len(buf), 1 << 16))
            except OSError:  # a timeout too
                break
            if not chunk:
                break
            buf += chunk
        self.received += len(buf)
        return bytes(buf)

    def expect(self, data: bytes, timeout_s: float = 5.0) -> bytes:
        """Read ``len(data)`` bytes and require them to equal ``data``."""
        __tracebackhide__ = True  # the failure is the message, not our frames
        t0 = time.monotonic()
        got = self.receive(len(data), timeout_s)
        if got != data:
            at = next((i for i, (a, b) in enumerate(zip(got, data, strict=False)) if a != b),
                      min(len(got), len(data)))  # fmt: skip
            took = time.monotonic() - t0
            raise ExpectationFailed(
                self.target.name,
                f"expect {len(data)} B on {self.where} (stream offset {self.received - len(got)})",
                f"{_preview(data, at)} ({len(data)} B)",
                f"{_preview(got, at)} ({len(got)} B within {took:.2f} s"
                + (f", first difference at byte {at}" if at < len(got) else "") + ")",
                self.target.pcaps(),
            )  # fmt: skip
        return got

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _preview(data: bytes, at: int, width: int = 24) -> str:
    start = max(0, at - width // 2)
    text = repr(data[start : start + width])
    return ("..." if start else "") + text + ("..." if start + width < len(data) else "")


class LabTarget:
    """One target of a running session."""

    def __init__(self, session: HilSession, node: Node) -> None:
        self.session = session
        self.node = node
        self.name = node.spec.name
        self.stack = node.spec.stack
        self.ctx = engine.Context.for_node(node, session.out, session.budget_s)
        engine.write_build(self.ctx)
        self.observations: dict[str, list[Observation]] = {}  # probe id -> its observations
        self._lock = threading.Lock()
        self.record: TestRecord | None = None

    def __repr__(self) -> str:
        return f"<LabTarget {self.name} ({self.stack})>"

    # -- what it is ----------------------------------------------------------------------

    @property
    def addresses(self) -> dict[str, str]:
        return self.node.addresses

    @property
    def services(self) -> dict[str, int]:
        return dict(self.ctx.services)

    @property
    def build(self) -> dict[str, Any]:
        return dict(self.ctx.build)

    @property
    def agent(self) -> Any:
        return self.ctx.agent

    def address(self, family: str = "ipv4") -> str:
        fam = {"4": "ipv4", "6": "ipv6"}.get(family, family)
        if fam not in self.addresses:
            raise SessionError(
                f"{self.name} has no {family} address on its link; it has "
                f"{', '.join(self.addresses) or 'none'}"
            )
        return self.addresses[fam]

    def port(self, service: str | int) -> int:
        if isinstance(service, int) or str(service).isdigit():
            return int(service)
        if service not in self.ctx.services:
            raise SessionError(
                f"{self.name} offers no {service!r} service; it offers "
                f"{', '.join(f'{k}:{v}' for k, v in self.ctx.services.items())}"
            )
        return self.ctx.services[service]

    def declared(self) -> dict[str, bool]:
        """On/off features as the target's configuration declares them."""
        return declared(self.ctx.build)

    # -- per-test recording --------------------------------------------------------------

    def begin(self, record: TestRecord) -> None:
        self.record = record

    def end(self) -> None:
        self.record = None

    def _dir(self) -> Path:
        if self.record is not None:
            return self.record.directory / self.name
        return self.session.out / "adhoc" / self.name

    def pcaps(self) -> list[Path]:
        """The pcaps of the current test that show this target's link."""
        if self.record is None:
            return []
        mine = self._dir()
        return [p for p in self.record.pcaps if mine in p.parents or self.name in p.parts]

    @contextlib.contextmanager
    def capture(self, name: str | None = None) -> Iterator[LinkRecorder]:
        """Everything on the target's link while the body runs, to ``<test dir>/<target>/``."""
        path = self._dir() / f"{name or self.name}.pcapng"
        if self.record is not None:
            self.record.add_pcap(path)
        with LinkRecorder(self.node.tester.netns, self.node.tester.ifname, path) as cap:
            yield cap

    @contextlib.contextmanager
    def timeline(
        self,
        service: str | int,
        family: str = "ipv4",
        name: str = "timeline",
        *,
        strict: bool = True,
        seed: int | None = None,
        **options: Any,
    ) -> Iterator[Timeline]:
        """The raw programmable peer (the timeline DSL, ``docs/timeline.md``) on this target's
        link, speaking to ``service``. The wire is recorded to ``<test dir>/<target>/pcaps/``;
        a connection still open at the end is reset, so the target keeps no state behind.
        A failing step's message names the target, the family and the pcap to open."""
        ctx = dataclasses.replace(self.ctx, outdir=self._dir(), captures=[])
        fam = {"4": "ipv4", "6": "ipv6"}.get(family, family)
        self.address(fam)
        with ctx.raw(fam, name) as wire:
            if self.record is not None:
                self.record.add_pcap(wire.pcap_path)
            t = Timeline(wire, port=self.port(service), strict=strict, seed=seed, **options)
            try:
                yield t
                if strict:
                    t.finish()  # as leaving ``with Timeline(...)``: nothing left unexpected
            except TimelineError as exc:
                exc.args = (f"{self.name} ({self.stack}, {fam}): {exc.args[0]}\n"
                            f"  open {wire.pcap_path}",)  # fmt: skip
                raise
            finally:
                reset(t)

    def connect(
        self, service: str | int, family: str = "ipv4", timeout_s: float = 5.0
    ) -> Connection:
        return Connection(self, str(service), family, timeout_s)

    # -- probes and features -------------------------------------------------------------

    def probe(self, *ids: str) -> list[Observation]:
        """Run catalogue probes (each once per session) and return their observations."""
        unknown = [i for i in ids if i not in PROBES]
        if unknown:
            raise SessionError(
                f"unknown probe(s) {', '.join(unknown)}; the catalogue has {', '.join(PROBES)}"
            )
        out: list[Observation] = []
        for pid in ids:
            with self._lock:
                if pid not in self.observations:
                    self.observations[pid] = engine.run_probe(self.ctx, PROBES[pid])
                out += self.observations[pid]
        return out

    def known(self, key: str) -> list[Observation]:
        """Observations of ``key`` made so far (this session or the bundle it was given)."""
        key = feature_key(key)
        mine = [o for obs in self.observations.values() for o in obs if o.key == key]
        return mine or [o for o in self.session.prior.get(self.name, []) if o.key == key]

    def observed(self, key: str, family: str | None = None) -> Observation:
        """The observation of ``key``: made earlier, or now by the probe that yields it."""
        key = feature_key(key)
        found = self.known(key)
        if not found:
            pid = next((p.id for p in PROBES.values() if key in p.keys), None)
            if pid is None:
                raise SessionError(f"no probe of the catalogue observes {key!r}")
            self.probe(pid)
            found = self.known(key)
        fam = {"4": "ipv4", "6": "ipv6"}.get(family or "", family)
        chosen = [o for o in found if not fam or o.family in (fam, "")] or found
        valued = [o for o in chosen if o.value is not None]
        obs = (valued or chosen)[0]
        if self.record is not None:
            self.record.observations.append((self.name, obs))
            if obs.evidence is not None:
                self.record.add_pcap(self.session.out / obs.evidence.pcap)
        return obs

    def absent(self, feature: str) -> str | None:
        """Why ``feature`` is absent on this target (its configuration or an observation says
        so), or None when nothing says it is."""
        key = feature_key(feature)
        conf = self.declared().get(key)
        if conf is False:
            return f"{self.name} ({self.stack}): its configuration has {key} off"
        for o in self.known(key):
            if o.value is False:
                return f"{self.name} ({self.stack}): {key} observed absent by {o.probe}"
        return None

    def _evidence(self, obs: Observation) -> list[Path]:
        if obs.evidence is None or not obs.evidence.pcap:
            return []
        return [self.session.out / obs.evidence.pcap]

    def _step(self, obs: Observation) -> str:
        fam = f", {obs.family}" if obs.family else ""
        return f"{obs.key} (probe {obs.probe}{fam})"

    def _where(self, obs: Observation) -> list[str]:
        out = []
        for p in self._evidence(obs):
            frames = obs.evidence.frames if obs.evidence else ()
            out.append(f"{p}" + (f" frames {frames[0]}-{frames[-1]}" if frames else ""))
        return out

    def feature_should_be(
        self, key: str, expected: Value, family: str | None = None
    ) -> Observation:
        __tracebackhide__ = True  # the failure is the message, not our frames
        obs = self.observed(key, family)
        if not _equal(obs.value, expected):
            raise ExpectationFailed(
                self.name, self._step(obs), show(expected, obs.unit), show(obs.value, obs.unit),
                self._where(obs), f"{obs.verdict}: {obs.detail}" if obs.detail else obs.verdict,
            )  # fmt: skip
        return obs

    def feature_should_be_within(
        self, key: str, low: float, high: float, family: str | None = None
    ) -> Observation:
        __tracebackhide__ = True  # the failure is the message, not our frames
        obs = self.observed(key, family)
        v = obs.value
        if isinstance(v, bool) or not isinstance(v, int | float) or not low <= v <= high:
            raise ExpectationFailed(
                self.name, self._step(obs), f"within [{low:g}, {high:g}] {obs.unit}".rstrip(),
                show(obs.value, obs.unit), self._where(obs),
                f"{obs.verdict}: {obs.detail}" if obs.detail else obs.verdict,
            )  # fmt: skip
        return obs


def _equal(observed: Value, expected: Value) -> bool:
    if isinstance(observed, bool) or isinstance(expected, bool):
        return observed is expected
    if isinstance(observed, int | float) and isinstance(expected, int | float):
        return float(observed) == float(expected)
    return observed == expected


class Peer:
    """The tester as a programmable TCP peer of one target: the raw side of its link, driven
    with the timeline DSL, plus the moves the probes are built from."""

    def __init__(self, target: LabTarget) -> None:
        self.target = target

    def timeline(
        self, service: str | int, family: str = "ipv4", name: str = "peer", **kw: Any
    ) -> contextlib.AbstractContextManager[Timeline]:
        """See :meth:`LabTarget.timeline`."""
        return self.target.timeline(service, family, name, **kw)

    handshake = staticmethod(peer_moves.handshake)
    estimate = staticmethod(peer_moves.estimate)
    gaps_ms = staticmethod(peer_moves.gaps_ms)


class HilSession:
    """A lab file's targets, up for the length of a test run."""

    def __init__(
        self,
        lab_path: Path,
        out: Path,
        targets: Sequence[str] = (),
        budget_s: float = 60.0,
        prior: Path | None = None,
    ) -> None:
        self.lab_path = Path(lab_path)
        self.lab = load_lab(self.lab_path)  # LabError names the file, the line and the fix
        names = [t.name for t in self.lab.targets]
        unknown = [t for t in targets if t not in names]
        if unknown:
            raise SessionError(
                f"unknown target(s) {', '.join(unknown)}; {self.lab_path} has {', '.join(names)}"
            )
        self.names = list(targets) or names
        self.out = Path(out)
        self.budget_s = budget_s
        self.prior: dict[str, list[Observation]] = {}
        if prior is not None:
            for name in self.names:
                with contextlib.suppress(OSError, ValueError, KeyError):
                    self.prior[name] = engine.load_observations(prior / name)
        self._vlab: VirtualLab | None = None
        self.targets: dict[str, LabTarget] = {}
        self._lock = threading.Lock()

    def spec_stack(self, name: str) -> str:
        return self.lab.target(name).stack

    @property
    def is_up(self) -> bool:
        return self._vlab is not None

    def up(self) -> None:
        """Bring the chosen targets up (once); a failure tears down what came up."""
        with self._lock:
            if self._vlab is not None:
                return
            if os.geteuid() != 0:
                raise SessionError(
                    f"bringing up {self.lab_path} needs root (network namespaces and links); "
                    "run the tests as root"
                )
            self.out.mkdir(parents=True, exist_ok=True)
            vlab = VirtualLab(self.lab, self.out / "logs")
            try:
                vlab.up(self.names)
            except (LabUpError, KeyError) as exc:
                vlab.down()
                raise SessionError(f"{self.lab_path}: the lab did not come up:\n{exc}") from None
            except BaseException:
                vlab.down()
                raise
            self._vlab = vlab
            self.targets = {n: LabTarget(self, vlab.node(n)) for n in self.names}

    def down(self) -> None:
        with self._lock:
            vlab, self._vlab = self._vlab, None
            self.targets = {}
        if vlab is not None:
            vlab.down()

    def target(self, name: str) -> LabTarget:
        self.up()
        try:
            return self.targets[name]
        except KeyError:
            raise SessionError(
                f"target {name!r} is not in this session; it has {', '.join(self.names)}"
            ) from None

    def __enter__(self) -> HilSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
