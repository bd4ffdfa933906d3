"""A minimal reader for ``lab.yaml``: just what ``hil run`` needs today.

Errors name the file, the key and the fix. The full, versioned lab model replaces this module;
it reads the same keys.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stack.services import ServiceSpec, parse_services
from stack.wire import addr as A


class LabFileError(ValueError):
    pass


@dataclass(frozen=True)
class LocalTarget:
    name: str
    mac: str
    ipv4: str
    ipv6: str
    services: list[ServiceSpec]


@dataclass(frozen=True)
class Lab:
    path: Path
    tester_ipv4: str
    tester_ipv6: str
    targets: list[LocalTarget]


def _get(where: str, mapping: Any, key: str, path: Path) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise LabFileError(f"{path}: {where} needs the key '{key}'")
    return mapping[key]


def _iface(path: Path, where: str, text: Any) -> str:
    try:
        return str(ipaddress.ip_interface(str(text)))
    except ValueError:
        raise LabFileError(
            f"{path}: {where} is {text!r}; write ADDRESS/PREFIX, e.g. 10.0.0.2/24"
        ) from None


def load(path: Path) -> Lab:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise LabFileError(f"{path}: no such lab file (pass --lab FILE)") from None
    except yaml.YAMLError as exc:
        raise LabFileError(f"{path}: not valid YAML: {exc}") from None
    if _get("the top level", data, "version", path) != 1:
        raise LabFileError(
            f"{path}: version {data['version']!r} is not supported; this tool reads version: 1"
        )
    tester = _get("the top level", data, "tester", path)
    targets = []
    for i, t in enumerate(_get("the top level", data, "targets", path) or []):
        where = f"targets[{i}]"
        name = _get(where, t, "name", path)
        stack = _get(where, t, "stack", path)
        if stack != "local":
            raise LabFileError(
                f"{path}: {where} ({name}) has stack {stack!r}; "
                "this release runs only 'local' targets"
            )
        mac = str(t.get("mac", "02:00:00:00:00:02"))
        try:
            A.mac_parse(mac)
        except ValueError as exc:
            raise LabFileError(f"{path}: {where}.mac: {exc}") from None
        try:
            services = parse_services(",".join(str(s) for s in t.get("services", [])))
        except ValueError as exc:
            raise LabFileError(f"{path}: {where}.services: {exc}") from None
        targets.append(
            LocalTarget(
                name,
                mac,
                _iface(path, f"{where}.ipv4", _get(where, t, "ipv4", path)),
                _iface(path, f"{where}.ipv6", _get(where, t, "ipv6", path)),
                services,
            )
        )
    if not targets:
        raise LabFileError(f"{path}: 'targets' is empty; declare at least one target")
    return Lab(
        path,
        _iface(path, "tester.ipv4", _get("tester", tester, "ipv4", path)),
        _iface(path, "tester.ipv6", _get("tester", tester, "ipv6", path)),
        targets,
    )
