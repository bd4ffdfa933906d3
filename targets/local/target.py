"""The reference stack as a target: ``hil stack serve`` on the target's TAP, with a TCP profile,
per-field overrides and a seed, and the agent on its stdin/stdout."""

from __future__ import annotations

import sys
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from targets.base import Driver, Placement, ProcessDriver
from targets.spec import Target, register_target


class LocalTarget(Target):
    """The reference stack (``hil stack serve``) with a TCP profile and overrides."""

    kind: ClassVar[str] = "local"
    link_kinds: ClassVar[tuple[str, ...]] = ("tap",)
    stack: Literal["local"] = "local"
    profile: str = "full"
    tcp: dict[str, int | str | bool] = Field(default_factory=dict)
    seed: int = 0

    @model_validator(mode="after")
    def _profile(self) -> LocalTarget:
        from stack.tcp.profile import PROFILES, profile

        if self.profile not in PROFILES:
            raise ValueError(
                f"profile {self.profile!r} is unknown; profiles: {', '.join(PROFILES)}"
            )
        profile(self.profile, **{k: str(v) for k, v in self.tcp.items()})  # raises with keys
        return self

    def tcp_args(self) -> list[str]:
        return [f"{k}={_text(v)}" for k, v in self.tcp.items()]

    def driver(self, place: Placement) -> Driver:
        return LocalDriver(place, self)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


class LocalDriver(ProcessDriver):
    def __init__(self, place: Placement, spec: LocalTarget) -> None:
        self.spec = spec
        argv = [sys.executable, "-m", "harness.cli", "stack", "serve", "--tap", place.ifname]
        argv += ["--mtu", str(place.mtu), "--seed", str(spec.seed), "--profile", spec.profile]
        if spec.mac:
            argv += ["--mac", spec.mac]
        for addr in (spec.ipv4, spec.ipv6):
            if addr:
                argv += ["--ipv6" if ":" in addr else "--ipv4", addr]
        ports = spec.services.ports()
        svc = ",".join(f"{k}:{v}" for k, v in ports.items())
        argv += ["--services", svc]
        for item in spec.tcp_args():
            argv += ["--tcp", item]
        agent = spec.agent.transport == "stdio"
        if agent:
            argv.append("--agent")
        super().__init__(place, argv=argv, with_agent=agent, name=spec.name)

    def build_info(self) -> dict[str, Any]:
        from stack.tcp.profile import describe, profile

        cfg = profile(self.spec.profile, **{k: _text(v) for k, v in self.spec.tcp.items()})
        return {
            "stack": "local",
            "profile": self.spec.profile,
            "overrides": dict(self.spec.tcp),
            "seed": self.spec.seed,
            "python": sys.version.split()[0],
            "tcp": describe(cfg),
        }


register_target(LocalTarget)
