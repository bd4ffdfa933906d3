"""What a lab file says about a target, as pydantic models (lab schema version 1).

These live beside the drivers, not in the harness, because each target kind owns its settings:
an out-of-tree driver (loaded through the lab file's ``imports:``) subclasses :class:`Target`,
adds its keys, and calls :func:`register_target`; the lab model picks it up from the registry.

Everything is strict (unknown keys are errors): a typo must not silently change a lab.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from targets.base import Driver, Placement

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


IPv4If = Annotated[
    str,
    AfterValidator(lambda v: _v4only(v)),
    Field(description="IPv4 address with prefix length, e.g. 10.77.1.2/24"),
]
IPv6If = Annotated[
    str,
    AfterValidator(lambda v: _v6only(v)),
    Field(description="IPv6 address with prefix, e.g. 2001:db8:77:1::2/64"),
]
MacAddr = Annotated[str, Field(pattern=r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")]
Port = Annotated[int, Field(ge=1, le=65535)]


class Addresses(Strict):
    ipv4: IPv4If | None = None
    ipv6: IPv6If | None = None
    mac: MacAddr | None = None


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
    """The level-1 contract: a line protocol over the target's console (docs/agent.md).
    ``stdio``: the target program's stdin/stdout; ``none``: the target has no agent."""

    transport: Literal["stdio", "none"] = "stdio"
    timeout_s: float = Field(5.0, gt=0)


class VirtualLink(Strict):
    """The harness builds the link: the target's own namespace, the tester's namespace, and a
    veth pair between them. ``tap``: the target program attaches to a TAP in its namespace that
    is wired to the veth (a userspace stack: local, lwip, most native builds). ``veth``: the
    target's kernel owns the veth end and gets the target's addresses (linux, or a native
    program that uses kernel sockets). Names are generated with the ``hil-`` prefix and the
    owner's pid, so the leftovers of a killed run are found and removed."""

    kind: Literal["tap", "veth"] = "tap"
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
    """What every target has. Stack kinds subclass this, say how they are driven
    (:meth:`driver`) and register themselves (:func:`register_target`)."""

    kind: ClassVar[str] = ""
    link_kinds: ClassVar[tuple[str, ...]] = ("tap", "veth")
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

    @model_validator(mode="after")
    def _addresses(self) -> Target:
        if self.ipv4 is None and self.ipv6 is None:
            raise ValueError("a target needs an ipv4 or an ipv6 address (or both)")
        if not self.services.ports():
            raise ValueError("a target needs at least one service (echo, discard, chargen)")
        virtual = self.link.virtual
        if virtual is not None and virtual.kind not in self.link_kinds:
            raise ValueError(
                f"link.virtual.kind {virtual.kind!r} does not suit stack {self.kind!r}; "
                f"use {' or '.join(repr(k) for k in self.link_kinds)}"
            )
        return self

    def driver(self, place: Placement) -> Driver:
        """The driver that brings this target up at ``place``."""
        raise NotImplementedError(f"stack {self.kind!r} has no driver")


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


def keys_match(v: dict[str, Any], pattern: str, message: str) -> dict[str, Any]:
    """Every key of a settings mapping must match ``pattern``; else ``message`` names it."""
    for key in v:
        if not re.fullmatch(pattern, key):
            raise ValueError(message.format(key=key))
    return v


TARGET_KINDS: dict[str, type[Target]] = {}


def register_target(cls: type[Target]) -> type[Target]:
    """Make a target kind known (out-of-tree drivers call this from their module)."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} needs a class attribute kind = '...'")
    TARGET_KINDS[cls.kind] = cls
    return cls
