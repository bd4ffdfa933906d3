"""lwIP as a target: the program in ``main.c`` built by :mod:`targets.lwip.build` with the lab
file's ``lwipopts:`` on top of lwIP's own defaults, attached to the target's TAP, agent on
stdio. The build happens in :meth:`LwipDriver.start` and is cached by a hash of the options, so
a lab brings up in well under a second once built."""

from __future__ import annotations

import hashlib
import platform
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from targets.base import Driver, Placement, ProcessDriver, TargetError
from targets.lwip import build as lwip_build
from targets.spec import Target, keys_match, register_target


class LwipTarget(Target):
    """lwIP built by the project from Debian's source package; ``lwipopts`` override opt.h."""

    kind: ClassVar[str] = "lwip"
    link_kinds: ClassVar[tuple[str, ...]] = ("tap",)
    stack: Literal["lwip"] = "lwip"
    lwipopts: dict[str, int | str] = Field(default_factory=dict)

    @field_validator("lwipopts")
    @classmethod
    def _macro_names(cls, v: dict[str, int | str]) -> dict[str, int | str]:
        return keys_match(
            v, r"[A-Z][A-Z0-9_]*", "lwipopts {key!r} is not an lwIP option name (e.g. TCP_MSS)"
        )

    def driver(self, place: Placement) -> Driver:
        return LwipDriver(place, self)


class LwipDriver(ProcessDriver):
    def __init__(self, place: Placement, spec: LwipTarget) -> None:
        self.spec = spec
        self.build: lwip_build.Build | None = None
        super().__init__(place, name=spec.name, with_agent=spec.agent.transport == "stdio")

    def start(self) -> None:
        try:
            self.build = lwip_build.ensure_built(self.spec.lwipopts)
        except (lwip_build.BuildError, ValueError) as exc:
            raise TargetError(f"{self.spec.name}: lwIP build failed: {exc}") from None
        spec = self.spec
        argv = [str(self.build.binary), "--tap", self.place.ifname, "--mtu", str(self.place.mtu)]
        if spec.mac:
            argv += ["--mac", spec.mac]
        if spec.ipv4:
            argv += ["--ipv4", spec.ipv4]
        if spec.ipv6:
            argv += ["--ipv6", spec.ipv6]
        for service in ("echo", "discard", "chargen"):
            argv += [f"--{service}", str(getattr(spec.services, service) or 0)]
        if self.with_agent:
            argv.append("--agent")
        self.argv = argv
        super().start()

    def build_info(self) -> dict[str, Any]:
        if self.build is None:
            return {"stack": "lwip", "requested": dict(self.spec.lwipopts)}
        digest = hashlib.sha256(self.build.binary.read_bytes()).hexdigest()
        return {
            "stack": "lwip",
            "lwip_version": self.build.lwip_version,
            "source": f"Debian source package {lwip_build.PACKAGE} {lwip_build.PACKAGE_VERSION}",
            "requested": dict(self.spec.lwipopts),
            "options": dict(self.build.options),
            "build_dir": str(self.build.directory),
            "binary_sha256": digest,
            "machine": platform.machine(),
        }


register_target(LwipTarget)
