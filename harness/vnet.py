"""Network namespaces and TAPs for the virtual lab, crash-safe.

Every namespace tcp-hil creates is named ``hil-<role>-<pid>``: the pid of the process that owns
it. A run that dies by SIGKILL cannot clean up after itself, so every start first removes the
``hil-`` namespaces whose owner pid is gone (:func:`gc_stale`); deleting a namespace removes the
TAPs and veths inside it and, with them, the routes and addresses. Nothing outside namespaces
this module created is ever touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

PREFIX = "hil-"


class VnetError(RuntimeError):
    pass


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = run(["ip", *args])
    if check and res.returncode != 0:
        raise VnetError(f"ip {' '.join(args)}: {res.stderr.strip() or res.stdout.strip()}")
    return res


def tc(netns: str, *args: str) -> None:
    res = run(["tc", "-n", netns, *args])
    if res.returncode != 0:
        raise VnetError(
            f"tc {' '.join(args)}: {res.stderr.strip()} (the kernel needs cls_u32 and "
            "act_mirred: modprobe cls_u32 act_mirred)"
        )


def netns_pids(name: str) -> list[int]:
    out = ip("netns", "pids", name, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def remove_netns(name: str) -> None:
    """Kill whatever still runs in ``name`` (a target program outlives a SIGKILLed owner: it
    has its own process group), then delete it; deleting a namespace deletes its links."""
    for _ in range(3):
        pids = netns_pids(name)
        if not pids:
            break
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    ip("netns", "del", name, check=False)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie counts as dead: a killed owner is not reaped at once
    (its parent, often init, does that later), but it will never clean up again."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def list_netns() -> list[str]:
    out = ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def gc_stale(prefix: str = PREFIX) -> list[str]:
    """Delete namespaces left by dead tcp-hil processes; returns their names."""
    removed = []
    for name in list_netns():
        if not name.startswith(prefix):
            continue
        tail = name.rsplit("-", 1)[-1]
        if tail.isdigit() and pid_alive(int(tail)) and int(tail) != os.getpid():
            continue
        if tail.isdigit() and int(tail) == os.getpid():
            continue
        remove_netns(name)
        removed.append(name)
    return removed


@dataclass
class TapLink:
    """A namespace whose kernel stack owns one side of a TAP; a stack under test owns the other."""

    netns: str
    tap: str
    addrs: list[str]

    def exec(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@contextmanager
def tap_link(role: str, addrs: list[str], tap: str = "hiltap0") -> Iterator[TapLink]:
    """Create ``hil-<role>-<pid>`` with a persistent TAP carrying ``addrs``; always removed."""
    name = f"{PREFIX}{role}-{os.getpid()}"
    ip("netns", "del", name, check=False)
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "tuntap", "add", "dev", tap, "mode", "tap")
        subprocess.run(
            ["ip", "netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{tap}.accept_dad=0"],
            capture_output=True,
            check=False,
        )
        for a in addrs:
            extra = ["nodad"] if ":" in a else []
            ip("-n", name, "addr", "add", a, "dev", tap, *extra)
        ip("-n", name, "link", "set", tap, "up")
        yield TapLink(name, tap, addrs)
    finally:
        ip("netns", "del", name, check=False)
