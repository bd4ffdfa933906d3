"""The probe engine: run catalogue probes against a target of a lab, record what they observe.

A probe is a function of a :class:`Context` (the target's addresses and services, the tester's
sockets, its agent, a capture factory and an output directory) that returns observations. The
engine runs probes one after another for a target and targets in parallel; each probe's
observations are written to ``<out>/<target>/observations/<probe>.json`` the moment it
finishes (atomically), so a run that is interrupted keeps what it learnt. A probe that raises
does not end the run: its keys become ``inconclusive`` with the error as the detail.
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.lab.virtual import Node, Tester
from harness.probes.capture import Capture, Packet
from harness.probes.livewire import RAW_PEER_MAC, LiveWire, raw_peer_ip
from harness.probes.observe import Evidence, Observation
from harness.probes.wire import WireInfo
from stack.wire import addr as A
from targets.agent.client import Agent


@dataclass
class Context:
    target: str
    stack: str
    tester: Tester
    addresses: dict[str, str]  # family -> the target's address
    tester_addresses: dict[str, str]  # family -> the tester's address
    services: dict[str, int]
    outdir: Path
    agent: Agent | None = None
    budget_s: float = 60.0
    mtu: int = 1500
    build: dict[str, Any] = field(default_factory=dict)  # the driver's build information
    captures: list[Path] = field(default_factory=list)
    agent_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def agent_session(self) -> Iterator[Agent]:
        """The target's agent, held for the body: the protocol has one command outstanding, so
        probes that drive the agent take turns while the others keep running. Raises
        :class:`NoAgent` (the probe's keys become not-applicable) when there is none."""
        if self.agent is None:
            raise NoAgent(f"{self.target} has no agent (level-1 probes need one)")
        with self.agent_lock:
            yield self.agent

    def capture(self, name: str, bpf: str | None = None) -> Capture:
        path = self.outdir / "pcaps" / f"{name}.pcap"
        self.captures.append(path)
        return Capture(self.tester.netns, self.tester.ifname, path, bpf)

    def evidence(self, cap: Capture, packets: list[Packet], note: str = "") -> Evidence:
        rel = os.path.relpath(cap.path, self.outdir.parent)
        if not packets:
            return Evidence(rel, 0.0, 0.0, (), note)
        return Evidence(
            rel,
            min(p.t for p in packets),
            max(p.t for p in packets),
            tuple(p.frame + 1 for p in packets),
            note,
        )

    def raw_peer(self, fam: str) -> str:
        """The address raw probes speak from in ``fam`` (see :func:`raw_peer_ip`)."""
        tester_if = getattr(self.tester, fam)
        if not tester_if or fam not in self.addresses:
            raise RuntimeError(f"the target has no {fam} link to the tester")
        return raw_peer_ip(tester_if, avoid=(self.addresses[fam],))

    @contextmanager
    def raw(self, fam: str, name: str) -> Iterator[LiveWire]:
        """A live wire on the tester's interface speaking for the raw peer in ``fam``; everything
        on the link meanwhile goes to ``pcaps/<name>-<fam>.pcapng``."""
        version = 4 if fam == "ipv4" else 6
        info = WireInfo(
            version,
            RAW_PEER_MAC[version],
            A.ip_parse(self.raw_peer(fam)),
            A.ip_parse(self.addresses[fam]),
            None,
            self.mtu,
        )
        path = self.outdir / "pcaps" / f"{name}-{fam}.pcapng"
        self.captures.append(path)
        with LiveWire(self.tester.netns, self.tester.ifname, info, path) as wire:
            yield wire

    def wire_evidence(self, wire: LiveWire, times_us: Iterable[int], note: str = "") -> Evidence:
        """Evidence in a live wire's pcap: the frames seen at ``times_us`` (wire times)."""
        wire.flush()
        stamps = sorted(set(times_us))
        rel = os.path.relpath(wire.pcap_path, self.outdir.parent)
        if not stamps:
            return Evidence(rel, 0.0, 0.0, (), note)
        frames = tuple(sorted(n for t in stamps if (n := wire.frame_number(t)) is not None))
        return Evidence(rel, stamps[0] / 1e6, stamps[-1] / 1e6, frames, note)

    @classmethod
    def for_node(cls, node: Node, outdir: Path, budget_s: float = 60.0) -> Context:
        tester = {
            fam: str(ipaddress.ip_interface(getattr(node.tester, fam)).ip) for fam in node.addresses
        }
        return cls(
            node.spec.name,
            node.spec.stack,
            node.tester,
            node.addresses,
            tester,
            node.spec.services.ports(),
            outdir / node.spec.name,
            node.driver.agent(),
            budget_s,
            node.place.mtu,
            _build_info(node),
        )


class NoAgent(RuntimeError):
    """The probe needs the target's agent and the target has none."""


def _build_info(node: Node) -> dict[str, Any]:
    try:
        return dict(node.driver.build_info())
    except Exception as exc:  # a report without build details beats no report
        return {"stack": node.spec.stack, "error": f"build information unavailable: {exc}"}


ProbeFn = Callable[[Context], list[Observation]]


@dataclass(frozen=True)
class Probe:
    """A catalogue entry. ``exclusive``: the probe changes something the others depend on (the
    tester's sysctls, the target's connection table), so it runs with nothing else in flight on
    that target."""

    id: str
    title: str
    keys: tuple[str, ...]
    fn: ProbeFn
    exclusive: bool = False


PROBES: dict[str, Probe] = {}


def probe(
    pid: str, title: str, keys: Iterable[str], *, exclusive: bool = False
) -> Callable[[ProbeFn], ProbeFn]:
    """Register a catalogue probe that yields observations for ``keys``."""

    def register(fn: ProbeFn) -> ProbeFn:
        PROBES[pid] = Probe(pid, title, tuple(keys), fn, exclusive)
        return fn

    return register


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def run_probe(ctx: Context, p: Probe) -> list[Observation]:
    t0 = time.monotonic()
    try:
        observations = p.fn(ctx)
        error = None
    except NoAgent as exc:
        error = None
        observations = [
            Observation(key, None, "not-applicable", p.id, detail=str(exc)) for key in p.keys
        ]
    except Exception as exc:  # a faulty target makes a probe inconclusive, not the run fail
        error = f"{type(exc).__name__}: {exc}"
        observations = [
            Observation(key, None, "inconclusive", p.id, detail=f"the probe failed: {error}")
            for key in p.keys
        ]
        (ctx.outdir / "logs").mkdir(parents=True, exist_ok=True)
        (ctx.outdir / "logs" / f"{p.id}.traceback.txt").write_text(traceback.format_exc())
    record = {
        "probe": p.id,
        "title": p.title,
        "target": ctx.target,
        "stack": ctx.stack,
        "seconds": round(time.monotonic() - t0, 3),
        "error": error,
        "observations": [o.to_json() for o in observations],
    }
    _write(ctx.outdir / "observations" / f"{p.id}.json", record)
    return observations


def write_build(ctx: Context) -> None:
    """``<out>/<target>/build.json``: what the capability column of Figure 2 reads."""
    _write(ctx.outdir / "build.json", ctx.build)


def run_target(
    ctx: Context,
    ids: Iterable[str] | None = None,
    on_done: Callable[[str, str], None] | None = None,
    parallel: int = 4,
    on_start: Callable[[str, str], None] | None = None,
) -> list[Observation]:
    """The chosen probes against one target: exclusive ones alone, one after another, then the
    rest ``parallel`` at a time (each on its own connections and ports). Observations come
    back in catalogue order whatever order the probes finished in."""
    write_build(ctx)
    chosen = [PROBES[i] for i in (ids if ids is not None else PROBES)]
    chosen.sort(key=lambda p: _order(p.id))
    results: dict[str, list[Observation]] = {}

    def one(p: Probe) -> None:
        if on_start is not None:
            on_start(ctx.target, p.id)
        results[p.id] = run_probe(ctx, p)
        if on_done is not None:
            on_done(ctx.target, p.id)

    for p in chosen:
        if p.exclusive:
            one(p)
    shared = [p for p in chosen if not p.exclusive]
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix=ctx.target) as pool:
        for f in [pool.submit(one, p) for p in shared]:
            f.result()
    return [o for p in chosen for o in results[p.id]]


def run_all(
    contexts: list[Context],
    ids: Iterable[str] | None = None,
    on_done: Callable[[str, str], None] | None = None,
    parallel: int = 4,
) -> dict[str, list[Observation]]:
    """Every target in parallel (see :func:`run_target` for the probes of one target)."""
    chosen = list(ids) if ids is not None else None
    with ThreadPoolExecutor(max_workers=max(1, len(contexts))) as pool:
        futures = {
            c.target: pool.submit(run_target, c, chosen, on_done, parallel) for c in contexts
        }
        return {name: f.result() for name, f in futures.items()}


def _order(pid: str) -> tuple[int, str]:
    digits = "".join(ch for ch in pid if ch.isdigit())
    return (int(digits) if digits else 999, pid)


def load_observations(outdir: Path) -> list[Observation]:
    """A target's observations from disk, in catalogue order (P2 before P10), as the engine
    returned them."""
    out = []
    for path in sorted((outdir / "observations").glob("*.json"), key=lambda p: _order(p.stem)):
        out += [Observation.from_json(o) for o in json.loads(path.read_text())["observations"]]
    return out
