"""Reading ``lab.yaml``: environment templating, YAML with line numbers, validation, cross-checks.

Every problem becomes a :class:`LabError` whose message names the file, the line, the key and
the fix, e.g. ``lab.yaml:14: targets[1] (lwip).lwipopts: 'tcp_mss' is not an lwIP option name
(e.g. TCP_MSS)``. All problems found are reported at once, not just the first.
"""

from __future__ import annotations

import difflib
import importlib
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.lab.model import TARGET_KINDS, Lab, Target

Loc = tuple[str | int, ...]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class LabError(ValueError):
    """A lab file problem; ``problems`` lists each as (line, message)."""

    def __init__(self, path: Path, problems: list[tuple[int | None, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}:{line}: {msg}" if line else f"{path}: {msg}" for line, msg in problems]
        super().__init__("\n".join(lines))


def expand_env(text: str, env: Mapping[str, str], path: Path) -> str:
    """``${VAR}`` and ``${VAR:-default}`` in the file's text; a missing VAR is an error."""
    problems: list[tuple[int | None, str]] = []
    out_lines = []
    for n, line in enumerate(text.splitlines(keepends=True), 1):
        if line.lstrip().startswith("#"):
            out_lines.append(line)
            continue

        def sub(m: re.Match[str], n: int = n) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(
                (n, f"${{{name}}} is not set; export {name}=... or write ${{{name}:-default}}")
            )
            return ""

        out_lines.append(_VAR.sub(sub, line))
    if problems:
        raise LabError(path, problems)
    return "".join(out_lines)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and records each value's line."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise _Duplicate(key_node.start_mark.line + 1, key, seen[key])
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Duplicate(Exception):
    def __init__(self, line: int, key: Any, first: int) -> None:
        self.line, self.key, self.first = line, key, first


def _lines(node: yaml.Node, loc: Loc = ()) -> dict[Loc, int]:
    """Map every key path to the line it starts on (1-based)."""
    out: dict[Loc, int] = {loc: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[(*loc, key)] = k.start_mark.line + 1
            for sub, line in _lines(v, (*loc, key)).items():
                out.setdefault(sub, line)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out.update(_lines(v, (*loc, i)))
    return out


def _line_for(lines: dict[Loc, int], loc: Loc) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def _where(data: Any, loc: Loc) -> str:
    """``targets[1] (lwip).lwipopts`` from a location tuple, naming targets by name."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]"]
            if isinstance(node, list) and item < len(node):
                node = node[item]
                if isinstance(node, dict) and isinstance(node.get("name"), str):
                    parts[-1] += f" ({node['name']})"
            else:
                node = None
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "the top level"


def _fields(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class whose field set applies at ``loc`` (to suggest valid keys)."""
    cur: Any = model
    for item in loc:
        if isinstance(item, int):
            continue
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)):
            return None
        field = cur.model_fields.get(str(item))
        if field is None:
            return None
        cur = _unwrap(field.annotation)
    return cur if isinstance(cur, type) and issubclass(cur, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    for arg in getattr(tp, "__args__", ()) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return tp


def _explain(err: Any, model: type[BaseModel], loc: Loc) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        parent = _model_at(model, loc[:-1])
        valid = _fields(parent) if parent is not None else []
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown key '{key}'; {hint}valid keys: {', '.join(valid)}"
    if kind == "missing":
        return f"the key '{loc[-1]}' is required"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    if kind in ("value_error", "assertion_error"):
        return msg  # our own validators already say what was wrong and how to write it
    return f"{msg} (got {err.get('input')!r})"


def _validate_target(
    raw: Any, i: int, lines: dict[Loc, int], data: Any
) -> tuple[Target | None, list[tuple[int | None, str]]]:
    loc: Loc = ("targets", i)
    if not isinstance(raw, dict):
        return None, [(_line_for(lines, loc), f"{_where(data, loc)}: a target is a mapping")]
    stack = raw.get("stack")
    cls = TARGET_KINDS.get(str(stack)) if stack is not None else None
    if cls is None:
        kinds = ", ".join(sorted(TARGET_KINDS))
        why = "needs 'stack'" if stack is None else f"has unknown stack {stack!r}"
        return None, [
            (
                _line_for(lines, (*loc, "stack")),
                f"{_where(data, loc)} {why}; stacks: {kinds} (others come from 'imports:')",
            )
        ]
    try:
        return cls.model_validate(raw), []
    except ValidationError as exc:
        problems: list[tuple[int | None, str]] = []
        for err in exc.errors():
            sub = (*loc, *err["loc"])
            problems.append(
                (_line_for(lines, sub), f"{_where(data, sub)}: {_explain(err, cls, err['loc'])}")
            )
        return None, problems


def parse(text: str, path: Path, env: Mapping[str, str] | None = None) -> Lab:
    """Validate lab-file text (``path`` is for messages)."""
    text = expand_env(text, os.environ if env is None else env, path)
    try:
        node = yaml.compose(text, Loader=_LineLoader)
        data = yaml.load(text, Loader=_LineLoader)
    except _Duplicate as dup:
        raise LabError(
            path, [(dup.line, f"'{dup.key}' appears twice (first on line {dup.first})")]
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise LabError(path, [(line, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if node is None or not isinstance(data, dict):
        raise LabError(path, [(None, "empty or not a mapping; start with 'version: 1'")])
    lines = _lines(node)
    problems: list[tuple[int | None, str]] = []
    if data.get("version") != 1:
        problems.append(
            (
                _line_for(lines, ("version",)),
                f"version {data.get('version')!r} is not supported; this tool reads 'version: 1'",
            )
        )
        raise LabError(path, problems)
    for module in data.get("imports") or []:
        try:
            importlib.import_module(str(module))
        except Exception as exc:
            problems.append(
                (_line_for(lines, ("imports",)), f"imports: cannot import {module!r}: {exc}")
            )
    targets: list[Target] = []
    raw_targets = data.get("targets")
    if isinstance(raw_targets, list):
        for i, raw in enumerate(raw_targets):
            target, errs = _validate_target(raw, i, lines, data)
            problems += errs
            if target is not None:
                targets.append(target)
    top = {k: v for k, v in data.items() if k != "targets"}
    top["targets"] = [{"name": "x", "stack": "local", "ipv4": "10.0.0.1/8"}]
    try:
        Lab.model_validate(top)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(
                (
                    _line_for(lines, err["loc"]),
                    f"{_where(data, err['loc'])}: {_explain(err, Lab, err['loc'])}",
                )
            )
    if not isinstance(raw_targets, list) or not raw_targets:
        problems.append((_line_for(lines, ("targets",)), "'targets' must list at least one target"))
    if problems:
        raise LabError(path, problems)
    problems += _cross_checks(targets, lines)
    if problems:
        raise LabError(path, problems)
    return Lab.model_validate({**data, "targets": targets})


def _cross_checks(targets: list[Target], lines: dict[Loc, int]) -> list[tuple[int | None, str]]:
    """What one target alone cannot know: duplicate names, addresses, NICs, subnet overlaps."""
    problems: list[tuple[int | None, str]] = []
    names: dict[str, int] = {}
    addrs: dict[str, str] = {}
    nics: dict[str, str] = {}
    for i, t in enumerate(targets):
        where = f"targets[{i}] ({t.name})"
        if t.name in names:
            problems.append(
                (
                    _line_for(lines, ("targets", i, "name")),
                    f"{where}: the name '{t.name}' is already used by targets[{names[t.name]}]; "
                    "names must be unique",
                )
            )
        names.setdefault(t.name, i)
        own = [
            ("ipv4", t.ipv4),
            ("ipv6", t.ipv6),
            ("tester.ipv4", t.tester.ipv4),
            ("tester.ipv6", t.tester.ipv6),
        ]
        for key, value in own:
            if value is None:
                continue
            ip = str(ipaddress.ip_interface(value).ip)
            label = f"{where}.{key}"
            if ip in addrs:
                problems.append(
                    (
                        _line_for(lines, ("targets", i, *key.split("."))),
                        f"{label}: address {ip} is already used by {addrs[ip]}; "
                        "every address in a lab must be unique",
                    )
                )
            addrs.setdefault(ip, label)
        for fam in ("ipv4", "ipv6"):
            mine, theirs = getattr(t, fam), getattr(t.tester, fam)
            if mine and theirs:
                a, b = ipaddress.ip_interface(mine), ipaddress.ip_interface(theirs)
                if a.network != b.network:
                    problems.append(
                        (
                            _line_for(lines, ("targets", i, "tester", fam)),
                            f"{where}.tester.{fam}: {theirs} is not in the target's subnet "
                            f"{a.network}; put both ends of the link in one subnet",
                        )
                    )
        if t.link.board is not None:
            nic = t.link.board.nic
            if nic in nics:
                problems.append(
                    (
                        _line_for(lines, ("targets", i, "link", "board", "nic")),
                        f"{where}.link.board.nic: {nic} is already the link of {nics[nic]}; "
                        "each board needs its own NIC",
                    )
                )
            nics.setdefault(nic, where)
    return problems


def load(path: Path, env: Mapping[str, str] | None = None) -> Lab:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LabError(path, [(None, "no such lab file (pass --lab FILE)")]) from None
    return parse(text, path, env)
