"""The virtual lab: every target in a namespace of its own, linked to a tester namespace of its own.

For each target ``t`` of owner process ``P`` (the process that brings the lab up)::

    hil-t-tester-P                        hil-t-P
    +-------------------------+   veth   +--------------------------------------+
    | tester0: tester addrs   |==========| eth0: target addrs (kind veth: the   |
    | (the harness's kernel   |          |   namespace's kernel is the target)  |
    |  sockets, captures, the |          | or wire0 <-tc mirred-> tap0 (kind    |
    |  reference-stack peer)  |          |   tap: a program owns the TAP)       |
    +-------------------------+          +--------------------------------------+

The tester side is the same for every kind: ``tester0`` in the tester namespace. The target side
is either a kernel interface (``eth0``) or a TAP (``tap0``) that ``tc`` mirrors frame for frame
to the veth end ``wire0``, with IPv6 off in that namespace so its kernel adds nothing to the
wire. Both namespaces carry the owner's pid; :func:`harness.vnet.gc_stale` removes those whose
owner is gone (killing what still runs inside first), so a run killed with SIGKILL is cleaned
up by the next start. Everything is created inside these namespaces: the host's own interfaces
are never created, moved or used.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import vnet
from harness.lab.model import Lab, Target
from stack.phy.netns import in_netns
from targets.base import Driver, Placement, TargetError

TESTER_IF = "tester0"
SERVICE_WAIT_S = 20.0


class LabUpError(RuntimeError):
    """Bringing a target up failed; the message names the target and what to look at."""


def ns_names(target: str, owner: int) -> tuple[str, str]:
    """(target namespace, tester namespace) of ``target`` in a lab owned by ``owner``."""
    return f"{vnet.PREFIX}{target}-{owner}", f"{vnet.PREFIX}{target}-tester-{owner}"


@dataclass
class Tester:
    """The harness's side of one target's link: kernel sockets in the tester namespace."""

    __test__ = False  # not a pytest class, whatever its name

    netns: str | None
    ifname: str
    ipv4: str | None
    ipv6: str | None

    def new_socket(self, family: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket that lives in the tester namespace (it stays there when used elsewhere)."""
        with in_netns(self.netns):
            return socket.socket(family, kind)

    def connect(self, addr: str, port: int, timeout: float = 5.0) -> socket.socket:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        sock = self.new_socket(fam)
        sock.settimeout(timeout)
        try:
            sock.connect((addr, port))
        except OSError:
            sock.close()
            raise
        return sock


@dataclass
class Node:
    """One target as placed in the lab."""

    spec: Target
    tester: Tester
    place: Placement
    driver: Driver
    namespaces: list[str] = field(default_factory=list)
    up_s: float = 0.0

    @property
    def addresses(self) -> dict[str, str]:
        """Family -> the target's address (no prefix), for families both ends have."""
        out = {}
        for fam in ("ipv4", "ipv6"):
            mine, theirs = getattr(self.spec, fam), getattr(self.tester, fam)
            if mine and theirs:
                out[fam] = str(ipaddress.ip_interface(mine).ip)
        return out


def _sysctl(netns: str, *items: str) -> None:
    res = vnet.run(["ip", "netns", "exec", netns, "sysctl", "-qw", *items])
    if res.returncode != 0:
        raise vnet.VnetError(f"sysctl {' '.join(items)} in {netns}: {res.stderr.strip()}")


def build_link(spec: Target, owner: int) -> tuple[str, str, str, int]:
    """Create both namespaces and the link; returns (target ns, tester ns, target ifname, mtu)."""
    assert spec.link.virtual is not None
    link = spec.link.virtual
    mtu = str(link.mtu)
    target_ns, tester_ns = ns_names(spec.name, owner)
    ip = vnet.ip
    for ns in (target_ns, tester_ns):
        ip("netns", "del", ns, check=False)  # our own leftover (same owner pid reused)
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
    # The tester is an ordinary host: addresses without DAD so the lab is usable at once.
    _sysctl(tester_ns, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
    peer = "eth0" if link.kind == "veth" else "wire0"
    if link.kind == "tap":
        # This namespace's kernel only carries frames between the TAP and the veth: it must
        # not add router solicitations or MLD reports of its own to the target's wire.
        _sysctl(
            target_ns, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"
        )
    else:
        _sysctl(target_ns, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
    peer_opts = ["address", spec.mac] if (spec.mac and link.kind == "veth") else []
    ip(
        "link", "add", TESTER_IF, "netns", tester_ns, "mtu", mtu, "type", "veth",
        "peer", "name", peer, "netns", target_ns, "mtu", mtu, *peer_opts,
    )  # fmt: skip
    for fam in ("ipv4", "ipv6"):
        addr = getattr(spec.tester, fam)
        if addr:
            ip(
                "-n",
                tester_ns,
                "addr",
                "add",
                addr,
                "dev",
                TESTER_IF,
                *(["nodad"] if ":" in addr else []),
            )
    if link.kind == "veth":
        for addr in (spec.ipv4, spec.ipv6):
            if addr:
                ip(
                    "-n",
                    target_ns,
                    "addr",
                    "add",
                    addr,
                    "dev",
                    peer,
                    *(["nodad"] if ":" in addr else []),
                )
        ifname = peer
    else:
        ifname = "tap0"
        ip("-n", target_ns, "tuntap", "add", "dev", ifname, "mode", "tap")
        ip("-n", target_ns, "link", "set", ifname, "mtu", mtu, "up")
        for src, dst in ((ifname, peer), (peer, ifname)):
            vnet.tc(target_ns, "qdisc", "add", "dev", src, "ingress")
            vnet.tc(
                target_ns, "filter", "add", "dev", src, "parent", "ffff:", "protocol", "all",
                "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect",
                "dev", dst,
            )  # fmt: skip
    # A wire carries MTU-sized frames with their final checksums: without segmentation,
    # receive aggregation and checksum offloads every capture and every raw probe sees the
    # segments a NIC would put on a cable, not 64 KiB super-frames with partial checksums.
    for ns, dev in ((target_ns, peer), (tester_ns, TESTER_IF)):
        plain_wire(ns, dev)
    ip("-n", target_ns, "link", "set", peer, "up")
    ip("-n", tester_ns, "link", "set", TESTER_IF, "up")
    return target_ns, tester_ns, ifname, link.mtu


OFFLOADS = ("tso", "gso", "gro", "tx")


def plain_wire(netns: str, dev: str) -> None:
    """Turn the offloads off that would make a veth end unlike a cable (needs ``ethtool``)."""
    args = [x for feat in OFFLOADS for x in (feat, "off")]
    res = vnet.run(["ip", "netns", "exec", netns, "ethtool", "-K", dev, *args])
    if res.returncode != 0:
        raise vnet.VnetError(f"ethtool -K {dev} {' '.join(args)} in {netns}: {res.stderr.strip()}")


class VirtualLab:
    """Bring a lab's virtual targets up in parallel and down again, whatever happens between.

    Use as a context manager; :meth:`down` also runs from ``__exit__`` on an exception or
    KeyboardInterrupt. The CLI turns SIGTERM into an exit so the same path runs then.
    """

    def __init__(
        self,
        lab: Lab,
        logdir: Path,
        owner: int | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.lab = lab
        self.logdir = logdir
        self.owner = os.getpid() if owner is None else owner
        self.nodes: dict[str, Node] = {}
        self.errors: dict[str, str] = {}
        self.progress = progress or (lambda _m: None)
        self._lock = threading.Lock()
        self.up_s = 0.0

    def __enter__(self) -> VirtualLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self, names: Iterable[str] | None = None, strict: bool = True) -> None:
        """Bring up ``names`` (default: every target) in parallel.

        With ``strict`` a target that fails stops the bring-up with :class:`LabUpError` (the
        others are torn down by ``down``); otherwise the failure is kept in :attr:`errors` and
        the other targets stay up.
        """
        removed = vnet.gc_stale(vnet.PREFIX)
        if removed:
            self.progress(f"removed leftovers of a killed run: {', '.join(removed)}")
        chosen = [self.lab.target(n) for n in names] if names is not None else self.lab.targets
        for spec in chosen:
            if spec.link.virtual is None:
                raise LabUpError(
                    f"{spec.name}: board links are brought up by the fixtures (power, console) "
                    "that the next phase adds; this release runs virtual targets"
                )
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, len(chosen))) as pool:
            results = list(pool.map(self._up_one, chosen))
        self.up_s = time.monotonic() - t0
        failed = [msg for msg in results if msg]
        if failed and strict:
            raise LabUpError("\n".join(failed))

    def _up_one(self, spec: Target) -> str | None:
        t0 = time.monotonic()
        try:
            target_ns, tester_ns, ifname, mtu = build_link(spec, self.owner)
        except vnet.VnetError as exc:
            for ns in ns_names(spec.name, self.owner):
                vnet.remove_netns(ns)
            return self._fail(spec, f"building its link failed: {exc}")
        place = Placement(target_ns, ifname, self.logdir, mtu)
        tester = Tester(tester_ns, TESTER_IF, spec.tester.ipv4, spec.tester.ipv6)
        node = Node(spec, tester, place, spec.driver(place), [target_ns, tester_ns])
        with self._lock:
            self.nodes[spec.name] = node
        try:
            node.driver.start()
            wait_services(node, SERVICE_WAIT_S)
        except (TargetError, OSError) as exc:
            return self._fail(spec, str(exc))
        node.up_s = time.monotonic() - t0
        self.progress(f"{spec.name}: up in {node.up_s:.2f} s")
        return None

    def _fail(self, spec: Target, why: str) -> str:
        msg = f"{spec.name} ({spec.stack}): {why}"
        with self._lock:
            self.errors[spec.name] = msg
        self.progress(msg)
        return msg

    def down(self) -> None:
        """Stop every target, then delete its namespaces (and with them every link)."""
        with self._lock:
            nodes = list(self.nodes.values())
            self.nodes.clear()
        with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            list(pool.map(_down_one, nodes))
        # A target that failed before its node existed may still have namespaces.
        for name in [t.name for t in self.lab.targets]:
            for ns in ns_names(name, self.owner):
                vnet.remove_netns(ns)

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(f"target {name!r} is not up; up: {', '.join(self.nodes)}") from None

    def state(self) -> dict[str, Any]:
        """What ``hil lab status`` shows, as plain data (also written to the state file)."""
        out: dict[str, Any] = {"lab": self.lab.name, "owner": self.owner, "up_s": self.up_s}
        targets: dict[str, Any] = {}
        for name, node in self.nodes.items():
            targets[name] = {
                "stack": node.spec.stack,
                "netns": node.place.netns,
                "ifname": node.place.ifname,
                "tester_netns": node.tester.netns,
                "tester_ifname": node.tester.ifname,
                "addresses": node.addresses,
                "services": node.spec.services.ports(),
                "pids": node.driver.pids(),
                "up_s": round(node.up_s, 3),
            }
        out["targets"] = targets
        out["errors"] = dict(self.errors)
        return out


def _down_one(node: Node) -> None:
    try:
        node.driver.stop()
    finally:
        for ns in node.namespaces:
            vnet.remove_netns(ns)


def wait_services(node: Node, timeout_s: float) -> None:
    """Return once every TCP service answers a connect from the tester in every family."""
    ports = {k: v for k, v in node.spec.services.ports().items() if k != "udp-echo"}
    deadline = time.monotonic() + timeout_s
    pending = [
        (fam, addr, kind, port)
        for fam, addr in node.addresses.items()
        for kind, port in ports.items()
    ]
    last = ""
    while pending:
        why = node.driver.alive()
        if why is not None:
            raise TargetError(f"the target program {why}")
        _fam, addr, kind, port = pending[0]
        try:
            node.tester.connect(addr, port, timeout=1.0).close()
            pending.pop(0)
            continue
        except OSError as exc:
            last = f"{kind} on [{addr}]:{port}: {exc.strerror or exc}"
        if time.monotonic() > deadline:
            raise TargetError(
                f"services not reachable from the tester within {timeout_s:g} s ({last})"
            )
        time.sleep(0.05)
