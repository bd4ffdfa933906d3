"""``hil lab check``: beyond a valid file, can this machine bring the lab up?

Each problem names the target (or the machine) and the fix. The virtual-lab checks try the real
thing once in a throwaway namespace (veth, TAP, the tc mirror) rather than guessing from
module lists, because that is what fails on a locked-down kernel.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness import vnet
from harness.lab.model import Lab, LinuxTarget, LwipTarget, NativeTarget, Target
from targets.base import Placement


@dataclass(frozen=True)
class Problem:
    where: str  # "machine" or "targets[i] (name)"
    message: str


def check(lab: Lab) -> list[Problem]:
    problems: list[Problem] = []
    virtual = [t for t in lab.targets if t.link.virtual is not None]
    if virtual:
        problems += _machine()
    for i, t in enumerate(lab.targets):
        where = f"targets[{i}] ({t.name})"
        problems += [Problem(where, m) for m in _target(t)]
    return problems


def _machine() -> list[Problem]:
    out = []
    if os.geteuid() != 0:
        out.append(Problem("machine", "virtual targets need root (namespaces, TAP): run as root"))
    for cmd, pkg in (
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        ("sysctl", "procps"),
        ("ethtool", "ethtool"),
    ):
        if shutil.which(cmd) is None:
            out.append(Problem("machine", f"'{cmd}' is missing: apt-get install {pkg}"))
    if not Path("/dev/net/tun").exists():
        out.append(Problem("machine", "/dev/net/tun is missing: modprobe tun"))
    if out:
        return out
    ns_a, ns_b = f"{vnet.PREFIX}check-{os.getpid()}", f"{vnet.PREFIX}check-b-{os.getpid()}"
    try:
        vnet.ip("netns", "add", ns_a)
        vnet.ip("netns", "add", ns_b)
        vnet.ip(
            "link", "add", "a0", "netns", ns_a, "type", "veth", "peer", "name", "b0", "netns", ns_b
        )
        vnet.ip("-n", ns_b, "tuntap", "add", "dev", "tap0", "mode", "tap")
        vnet.tc(ns_b, "qdisc", "add", "dev", "tap0", "ingress")
        vnet.tc(
            ns_b, "filter", "add", "dev", "tap0", "parent", "ffff:", "protocol", "all", "u32",
            "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", "b0",
        )  # fmt: skip
    except vnet.VnetError as exc:
        out.append(Problem("machine", f"the kernel cannot build a virtual link: {exc}"))
    finally:
        vnet.remove_netns(ns_a)
        vnet.remove_netns(ns_b)
    return out


def _target(t: Target) -> list[str]:
    out: list[str] = []
    board = t.link.board
    if board is not None:
        if not Path("/sys/class/net", board.nic).exists():
            nics = ", ".join(sorted(p.name for p in Path("/sys/class/net").iterdir()))
            out.append(f"link.board.nic: no interface {board.nic!r} on this machine; have: {nics}")
        console = board.console or ""
        dev = console.removeprefix("serial://").split("?", 1)[0]
        if dev.startswith("/") and not Path(dev).exists():
            out.append(f"link.board.console: {dev} does not exist (board unplugged? udev name?)")
    if isinstance(t, LinuxTarget):
        for key in t.sysctl:
            path = Path("/proc/sys", *key.split("."))
            if not path.exists() and ".conf." not in key:
                out.append(f"sysctl: {key} does not exist on this kernel ({path})")
    if isinstance(t, LwipTarget):
        for cmd, pkg in (("gcc", "gcc"), ("dpkg-source", "dpkg-dev"), ("apt-get", "apt")):
            if shutil.which(cmd) is None:
                out.append(f"building lwIP needs '{cmd}': apt-get install {pkg}")
        out += _lwipopts(t)
    if isinstance(t, NativeTarget):
        from targets.native.target import resolve

        argv = t.expand(Placement("netns", "tap0", Path(".")))
        if resolve(argv[0]) is None:
            out.append(
                f"argv[0]: {argv[0]!r} is not an executable file or a command on PATH; "
                "build your binary first and give its path"
            )
    return out


def _lwipopts(t: LwipTarget) -> list[str]:
    """Option names lwIP does not know, once the source is cached (else the build reports)."""
    from targets.lwip import build as lwip_build

    tree = lwip_build.cache_root() / "src" / f"{lwip_build.PACKAGE}_{lwip_build.PACKAGE_VERSION}"
    if not tree.is_dir():
        return []
    known = lwip_build.known_options(tree)
    out = []
    for name in t.lwipopts:
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            out.append(f"lwipopts: {name} is not an lwIP option{hint}")
    return out
