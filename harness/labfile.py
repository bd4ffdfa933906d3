"""What the interim ``hil run`` needs from ``lab.yaml``: the local targets, read through the lab
model (:mod:`harness.lab`), so the shipped file is validated by the same schema as everything
else. The virtual-lab backend replaces this adapter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.lab.load import LabError
from harness.lab.load import load as load_lab
from harness.lab.model import LocalTarget as LocalModel
from stack.services import ServiceSpec

LabFileError = LabError


@dataclass(frozen=True)
class LocalTarget:
    name: str
    mac: str
    ipv4: str
    ipv6: str
    services: list[ServiceSpec]
    tester_ipv4: str
    tester_ipv6: str
    profile: str
    tcp: list[str]  # --tcp KEY=VALUE overrides


@dataclass(frozen=True)
class Lab:
    path: Path
    targets: list[LocalTarget]


def load(path: Path) -> Lab:
    lab = load_lab(path)
    targets = []
    for i, t in enumerate(lab.targets):
        if not isinstance(t, LocalModel):
            continue
        missing = [
            key
            for key, value in (
                ("mac", t.mac),
                ("ipv4", t.ipv4),
                ("ipv6", t.ipv6),
                ("tester.ipv4", t.tester.ipv4),
                ("tester.ipv6", t.tester.ipv6),
            )
            if value is None
        ]
        if missing:
            raise LabError(
                path,
                [(None, f"targets[{i}] ({t.name}): hil run needs {', '.join(missing)} set")],
            )
        services = [ServiceSpec(kind, port) for kind, port in t.services.ports().items()]
        assert t.mac and t.ipv4 and t.ipv6 and t.tester.ipv4 and t.tester.ipv6
        targets.append(
            LocalTarget(
                t.name,
                t.mac,
                t.ipv4,
                t.ipv6,
                services,
                t.tester.ipv4,
                t.tester.ipv6,
                t.profile,
                [f"{k}={_text(v)}" for k, v in t.tcp.items()],
            )
        )
    if not targets:
        raise LabError(path, [(None, "hil run needs at least one target with stack: local")])
    return Lab(path, targets)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
