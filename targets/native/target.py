"""A native target: the user's own program (RIOT native, a Contiki-NG native build, a smoltcp or
picoTCP example, their own port), started from the lab file's argv template in the target's
namespace, in a process group of its own. The project never builds it: the lab file names a
binary the user built.

Placeholders: ``{tap}`` / ``{ifname}`` the target-side interface (the TAP, or the veth end for a
program using kernel sockets), ``{netns}``, ``{mac}``, ``{ipv4}``/``{ipv6}`` (with prefix),
``{ipv4_addr}``/``{ipv6_addr}`` (without), ``{name}``, and one per service port
(``{echo}``, ``{discard}``, ``{chargen}``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shutil
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from targets.base import Driver, Placement, ProcessDriver, TargetError
from targets.spec import Agent, Target, register_target

PLACEHOLDERS = (
    "tap",
    "ifname",
    "netns",
    "mac",
    "ipv4",
    "ipv6",
    "ipv4_addr",
    "ipv6_addr",
    "name",
    "echo",
    "discard",
    "chargen",
)


class NativeTarget(Target):
    """Bring your own binary: an argv template started in the target's namespace."""

    kind: ClassVar[str] = "native"
    stack: Literal["native"] = "native"
    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    ready: str | None = Field(
        None, description="regex on the console meaning 'up' (else: the services answer)"
    )
    ready_timeout_s: float = Field(20.0, gt=0)
    agent: Agent = Field(
        default_factory=lambda: Agent(transport="none"),
        description="a native program speaks the agent protocol only if it says so",
    )

    @field_validator("argv")
    @classmethod
    def _placeholders(cls, v: list[str]) -> list[str]:
        for arg in v:
            for ph in re.findall(r"\{([^}]*)\}", arg):
                if ph not in PLACEHOLDERS:
                    known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                    raise ValueError(f"argv placeholder {{{ph}}} is unknown; use {known}")
        return v

    @field_validator("ready")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"ready {v!r} is not a regular expression: {exc}") from None
        return v

    def values(self, place: Placement) -> dict[str, str]:
        out = {"tap": place.ifname, "ifname": place.ifname, "netns": place.netns or ""}
        out |= {"mac": self.mac or "", "name": self.name}
        for fam in ("ipv4", "ipv6"):
            addr = getattr(self, fam)
            out[fam] = addr or ""
            out[f"{fam}_addr"] = str(ipaddress.ip_interface(addr).ip) if addr else ""
        for svc in ("echo", "discard", "chargen"):
            port = getattr(self.services, svc)
            out[svc] = str(port) if port else ""
        return out

    def expand(self, place: Placement) -> list[str]:
        values = self.values(place)
        return [re.sub(r"\{([a-z0-9_]+)\}", lambda m: values[m.group(1)], a) for a in self.argv]

    def driver(self, place: Placement) -> Driver:
        return NativeDriver(place, self)


class NativeDriver(ProcessDriver):
    def __init__(self, place: Placement, spec: NativeTarget) -> None:
        self.spec = spec
        super().__init__(
            place,
            argv=spec.expand(place),
            env=spec.env,
            ready=spec.ready,
            ready_timeout_s=spec.ready_timeout_s,
            with_agent=spec.agent.transport == "stdio",
            name=spec.name,
        )

    def start(self) -> None:
        if resolve(self.argv[0]) is None:
            raise TargetError(
                f"{self.spec.name}: argv[0] {self.argv[0]!r} is not an executable file or a "
                "command on PATH; build your binary first and give its path"
            )
        super().start()

    def build_info(self) -> dict[str, Any]:
        binary = resolve(self.argv[0])
        info: dict[str, Any] = {"stack": "native", "argv": self.argv, **self.spec.build}
        if binary is not None:
            info["binary"] = str(binary)
            info["binary_sha256"] = hashlib.sha256(binary.read_bytes()).hexdigest()
        return info


def resolve(program: str) -> Path | None:
    found = shutil.which(program)
    return Path(found).resolve() if found else None


register_target(NativeTarget)
