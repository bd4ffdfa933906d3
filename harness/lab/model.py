"""The lab model: what ``lab.yaml`` may say, as pydantic models (schema version 1).

A lab file describes a bench once: its targets (stacks under test), how each is reached
(a virtual link the harness builds, or a board's NIC and console), their addresses, the
level-0 services every target offers and the level-1 agent some speak. Target kinds are a
registry (:func:`register_target`), so an out-of-tree driver adds its own kind through the
file's ``imports:`` without a change here. ``fixtures:`` is reserved for the instruments of the
next phase (power, switches, link emulators, sniffers, radios); its sections are accepted as
free-form mappings today so files written for them keep loading.

Everything is strict (unknown keys are errors): a typo must not silently change a lab.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1
NAME_RE = r"^[a-z][a-z0-9-]{0,14}$"  # short: names become parts of netns and link names


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _iface(value: str) -> str:
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not ADDRESS/PREFIX (e.g. 10.0.0.2/24 or 2001:db8::2/64)"
        ) from None
    if "/" not in value:
        raise ValueError(f"{value!r} needs a prefix length (e.g. {value}/24)")
    return str(iface)


IPv4If = Annotated[str, Field(description="IPv4 address with prefix length, e.g. 10.77.1.2/24")]
IPv6If = Annotated[str, Field(description="IPv6 address with prefix, e.g. 2001:db8:77:1::2/64")]
MacAddr = Annotated[str, Field(pattern=r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")]
Port = Annotated[int, Field(ge=1, le=65535)]


class Addresses(Strict):
    ipv4: IPv4If | None = None
    ipv6: IPv6If | None = None
    mac: MacAddr | None = None

    @field_validator("ipv4")
    @classmethod
    def _v4(cls, v: str | None) -> str | None:
        return None if v is None else _v4only(v)

    @field_validator("ipv6")
    @classmethod
    def _v6(cls, v: str | None) -> str | None:
        return None if v is None else _v6only(v)


class Services(Strict):
    """The level-0 contract: the ports of RFC 862 echo, RFC 863 discard, RFC 864 chargen."""

    echo: Port | None = 7
    discard: Port | None = 9
    chargen: Port | None = 19
    udp_echo: Port | None = Field(None, alias="udp-echo")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def ports(self) -> dict[str, int]:
        out = {"echo": self.echo, "discard": self.discard, "chargen": self.chargen}
        out["udp-echo"] = self.udp_echo
        return {k: v for k, v in out.items() if v is not None}


class Agent(Strict):
    """The level-1 contract: a line protocol over the target's console (docs/agent.md)."""

    transport: Literal["stdio", "console", "none"] = "stdio"
    timeout_s: float = Field(5.0, gt=0)


class VirtualLink(Strict):
    """The harness builds the link: a namespace for the target and a TAP (or veth) in it.

    ``netns``/``ifname`` override the generated names (which carry the ``hil-`` prefix and
    the owner's pid, so leftovers of a killed run are found and removed)."""

    kind: Literal["tap", "veth"] = "tap"
    netns: str | None = Field(None, pattern=r"^hil-[a-z0-9-]+$")
    mtu: int = Field(1500, ge=1280, le=65535)


class BoardLink(Strict):
    """A real board: the harness's NIC cabled to it and its console (a serial URL)."""

    nic: str = Field(min_length=1, max_length=15)
    console: str | None = Field(
        None, description="e.g. serial:///dev/ttyUSB0?baudrate=115200 or a pty path"
    )


class Link(Strict):
    virtual: VirtualLink | None = None
    board: BoardLink | None = None

    @model_validator(mode="after")
    def _one(self) -> Link:
        if (self.virtual is None) == (self.board is None):
            raise ValueError("give exactly one of 'virtual' or 'board'")
        return self


class Target(Strict):
    """What every target has. Stack kinds subclass this and register themselves."""

    kind: ClassVar[str] = ""
    name: str = Field(pattern=NAME_RE, description="lower case, digits, '-'; at most 15")
    stack: str
    link: Link = Field(default_factory=lambda: Link(virtual=VirtualLink()))
    mac: MacAddr | None = None
    ipv4: IPv4If | None = None
    ipv6: IPv6If | None = None
    tester: Addresses = Field(
        default_factory=Addresses, description="the harness's side of this target's link"
    )
    services: Services = Field(default_factory=Services)
    agent: Agent = Field(default_factory=Agent)
    build: dict[str, Any] = Field(default_factory=dict, description="free-form build notes")

    @field_validator("ipv4")
    @classmethod
    def _v4(cls, v: str | None) -> str | None:
        return None if v is None else _v4only(v)

    @field_validator("ipv6")
    @classmethod
    def _v6(cls, v: str | None) -> str | None:
        return None if v is None else _v6only(v)

    @model_validator(mode="after")
    def _addresses(self) -> Target:
        if self.ipv4 is None and self.ipv6 is None:
            raise ValueError("a target needs an ipv4 or an ipv6 address (or both)")
        if not self.services.ports():
            raise ValueError("a target needs at least one service (echo, discard, chargen)")
        return self


def _v4only(v: str) -> str:
    out = _iface(v)
    if ipaddress.ip_interface(out).version != 4:
        raise ValueError(f"{v!r} is not an IPv4 address")
    return out


def _v6only(v: str) -> str:
    out = _iface(v)
    if ipaddress.ip_interface(out).version != 6:
        raise ValueError(f"{v!r} is not an IPv6 address")
    return out


def _keys_match(v: dict[str, Any], pattern: str, message: str) -> dict[str, Any]:
    """Every key of a settings mapping must match ``pattern``; else ``message`` names it."""
    for key in v:
        if not re.fullmatch(pattern, key):
            raise ValueError(message.format(key=key))
    return v


class LinuxTarget(Target):
    """The kernel's stack in its own namespace; ``sysctl`` keys are net.* settings."""

    kind: ClassVar[str] = "linux"
    stack: Literal["linux"] = "linux"
    sysctl: dict[str, int | str] = Field(default_factory=dict)

    @field_validator("sysctl")
    @classmethod
    def _net_only(cls, v: dict[str, int | str]) -> dict[str, int | str]:
        return _keys_match(
            v,
            r"net\.[a-z0-9_.-]+",
            "sysctl {key!r}: only per-namespace net.* keys can be set (e.g. net.ipv4.tcp_sack)",
        )


class LocalTarget(Target):
    """The reference stack (``hil stack serve``) with a TCP profile and overrides."""

    kind: ClassVar[str] = "local"
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


class LwipTarget(Target):
    """lwIP built by the project from Debian's source package; ``lwipopts`` override opt.h."""

    kind: ClassVar[str] = "lwip"
    stack: Literal["lwip"] = "lwip"
    lwipopts: dict[str, int | str] = Field(default_factory=dict)

    @field_validator("lwipopts")
    @classmethod
    def _macro_names(cls, v: dict[str, int | str]) -> dict[str, int | str]:
        return _keys_match(
            v, r"[A-Z][A-Z0-9_]*", "lwipopts {key!r} is not an lwIP option name (e.g. TCP_MSS)"
        )


class NativeTarget(Target):
    """Bring your own binary: argv with {tap}, {tun}, {netns} placeholders."""

    kind: ClassVar[str] = "native"
    stack: Literal["native"] = "native"
    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    ready: str | None = Field(None, description="regex on stdout meaning 'up' (else: a port)")

    @field_validator("argv")
    @classmethod
    def _placeholders(cls, v: list[str]) -> list[str]:
        for arg in v:
            for ph in re.findall(r"\{([^}]*)\}", arg):
                if ph not in ("tap", "tun", "netns", "mac", "ipv4", "ipv6", "name"):
                    raise ValueError(
                        f"argv placeholder {{{ph}}} is unknown; use {{tap}}, {{tun}}, "
                        "{netns}, {mac}, {ipv4}, {ipv6} or {name}"
                    )
        return v


TARGET_KINDS: dict[str, type[Target]] = {}


def register_target(cls: type[Target]) -> type[Target]:
    """Make a target kind known (out-of-tree drivers call this from their module)."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} needs a class attribute kind = '...'")
    TARGET_KINDS[cls.kind] = cls
    return cls


for _cls in (LinuxTarget, LocalTarget, LwipTarget, NativeTarget):
    register_target(_cls)


class Lab(Strict):
    version: Literal[1]
    name: str = Field("lab", pattern=r"^[A-Za-z0-9._-]+$")
    imports: list[str] = Field(default_factory=list, description="python modules to import")
    targets: list[Target] = Field(min_length=1)
    fixtures: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="reserved: power, switches, links, sniffers, radios"
    )

    def target(self, name: str) -> Target:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(f"no target {name!r}; targets: {', '.join(t.name for t in self.targets)}")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a lab file for editors (``hil lab schema``), with every registered
    target kind as one alternative of ``targets`` items, told apart by ``stack``."""
    from typing import Union

    from pydantic import create_model

    kinds = tuple(TARGET_KINDS.values())
    item: Any = kinds[0] if len(kinds) == 1 else Union[kinds]  # noqa: UP007 - built at run time
    union = Annotated[item, Field(discriminator="stack")]
    schema_model = create_model(
        "LabFile",
        __base__=Lab,
        targets=(list[union], Field(min_length=1)),
    )
    schema = schema_model.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"tcp-hil lab file, version {SCHEMA_VERSION}"
    return schema
