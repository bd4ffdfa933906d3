"""Linux as a target: the kernel's stack in the target's namespace, owning the veth end, with the
lab file's ``sysctl:`` overrides applied there; the services and the agent run in the namespace
as :mod:`targets.linux.agent`."""

from __future__ import annotations

import platform
import subprocess
import sys
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from targets.base import Driver, Placement, ProcessDriver, TargetError, netns_argv
from targets.spec import Link, Target, VirtualLink, keys_match, register_target

# Read back into the build information whether or not the lab file sets them.
REPORTED = (
    "net.ipv4.tcp_sack",
    "net.ipv4.tcp_dsack",
    "net.ipv4.tcp_window_scaling",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_ecn",
    "net.ipv4.tcp_fastopen",
    "net.ipv4.tcp_congestion_control",
    "net.ipv4.tcp_syn_retries",
    "net.ipv4.tcp_synack_retries",
    "net.ipv4.tcp_retries2",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_no_metrics_save",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.ip_default_ttl",
)


class LinuxTarget(Target):
    """The kernel's stack in its own namespace; ``sysctl`` keys are net.* settings."""

    kind: ClassVar[str] = "linux"
    link_kinds: ClassVar[tuple[str, ...]] = ("veth",)
    stack: Literal["linux"] = "linux"
    link: Link = Field(default_factory=lambda: Link(virtual=VirtualLink(kind="veth")))
    sysctl: dict[str, int | str] = Field(default_factory=dict)
    # Route metrics of the link's prefix routes (``ip route ... initcwnd N``): the initial
    # congestion window is not a sysctl in Linux, it is per route.
    initcwnd: int | None = Field(None, ge=1, le=1024)
    initrwnd: int | None = Field(None, ge=1, le=1024)

    @field_validator("sysctl")
    @classmethod
    def _net_only(cls, v: dict[str, int | str]) -> dict[str, int | str]:
        return keys_match(
            v,
            r"net\.[a-z0-9_.-]+",
            "sysctl {key!r}: only per-namespace net.* keys can be set (e.g. net.ipv4.tcp_sack)",
        )

    def driver(self, place: Placement) -> Driver:
        return LinuxDriver(place, self)


def sysctl(netns: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        netns_argv(netns, ["sysctl", *args]), capture_output=True, text=True, timeout=30
    )


class LinuxDriver(ProcessDriver):
    def __init__(self, place: Placement, spec: LinuxTarget) -> None:
        self.spec = spec
        svc = ",".join(f"{k}:{v}" for k, v in spec.services.ports().items())
        argv = [sys.executable, "-m", "targets.linux.agent", "--services", svc]
        agent = spec.agent.transport == "stdio"
        if not agent:
            argv.append("--no-agent")
        super().__init__(place, argv=argv, with_agent=agent, name=spec.name)

    def start(self) -> None:
        if self.spec.sysctl:
            items = [f"{k}={v}" for k, v in self.spec.sysctl.items()]
            res = sysctl(self.place.netns, "-w", *items)
            if res.returncode != 0:
                raise TargetError(
                    f"{self.spec.name}: sysctl {' '.join(items)} failed in "
                    f"{self.place.netns}: {res.stderr.strip()} (is the key per-namespace, and "
                    "the value one the kernel accepts? e.g. tcp_congestion_control needs the "
                    "module loaded)"
                )
        self._route_metrics()
        super().start()

    def _route_metrics(self) -> None:
        metrics = [
            (name, str(v))
            for name, v in (("initcwnd", self.spec.initcwnd), ("initrwnd", self.spec.initrwnd))
            if v is not None
        ]
        if not metrics:
            return
        for fam in ("-4", "-6"):
            routes = subprocess.run(
                netns_argv(self.place.netns, ["ip", fam, "route", "show", "dev", self.place.ifname,
                                              "proto", "kernel"]),
                capture_output=True, text=True, timeout=30,
            ).stdout.splitlines()  # fmt: skip
            for line in routes:
                if line.startswith(("fe80", "multicast")):
                    continue
                # The route as listed (prefix, src, metric, pref) identifies it for `change`.
                argv = [
                    "ip",
                    fam,
                    "route",
                    "change",
                    *line.split(),
                    "dev",
                    self.place.ifname,
                    *(x for m in metrics for x in m),
                ]
                res = subprocess.run(
                    netns_argv(self.place.netns, argv), capture_output=True, text=True, timeout=30
                )
                if res.returncode != 0:
                    raise TargetError(
                        f"{self.spec.name}: {' '.join(argv)} failed in {self.place.netns}: "
                        f"{res.stderr.strip()}"
                    )

    def build_info(self) -> dict[str, Any]:
        keys = list(dict.fromkeys([*REPORTED, *self.spec.sysctl]))
        values: dict[str, str] = {}
        for key in keys:
            res = sysctl(self.place.netns, "-n", key)
            if res.returncode == 0:
                values[key] = " ".join(res.stdout.split())
        return {
            "stack": "linux",
            "kernel": platform.release(),
            "requested": dict(self.spec.sysctl),
            "initcwnd": self.spec.initcwnd,
            "initrwnd": self.spec.initrwnd,
            "sysctl": values,
        }


register_target(LinuxTarget)
