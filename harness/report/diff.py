"""``hil diff A B``: what changed between two runs (two firmware builds, two sysctl sets).

Observations are compared per (target, feature key, address family): a value or a verdict
that differs is a change, a key only in B is new, a key only in A is gone. A **regression** --
what makes the exit status non-zero so CI can gate on it -- is a verdict getting worse
(``conforms``/``not-applicable`` -> ``inconclusive`` -> ``deviates``) or an observation that
disappeared (a target or probe that no longer answers is not an improvement).

Timer values are noisy: two numbers that both carry a confidence interval are the same when
their intervals overlap, so ``hil diff`` lists the builds' differences, not the jitter of one.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.report.model import load

__all__ = ["Change", "add_parser", "diff", "main", "render"]

# Lower is better. not-applicable ranks with conforms: the standard has nothing to say.
RANK = {"conforms": 0, "not-applicable": 0, "inconclusive": 1, "deviates": 2}


@dataclass(frozen=True)
class Change:
    target: str
    key: str
    family: str  # "ipv4", "ipv6", "stack" or "" (measured once for the stack)
    kind: str  # "changed", "added", "removed"
    old_value: Any
    new_value: Any
    old_verdict: str | None
    new_verdict: str | None
    regression: bool

    def text(self) -> str:
        label = f"{self.target} {self.key}" + (f" [{self.family}]" if self.family else "")
        if self.kind == "added":
            what = f"new: {self.new_value!r} ({self.new_verdict})"
        elif self.kind == "removed":
            what = f"gone (was {self.old_value!r}, {self.old_verdict})"
        else:
            what = (
                f"{self.old_value!r} ({self.old_verdict}) -> "
                f"{self.new_value!r} ({self.new_verdict})"
            )
        return ("REGRESSION " if self.regression else "") + f"{label}: {what}"


def _flat(report: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for name, t in report["targets"].items():
        for key, f in t["features"].items():
            for fam, o in (f.get("families") or {"": f}).items():
                out[(name, key, fam)] = o
    return out


def _same_value(a: dict[str, Any], b: dict[str, Any]) -> bool:
    va, vb = a["value"], b["value"]
    if va == vb and type(va) is type(vb):
        return True
    ia = (a.get("confidence") or {}).get("interval")
    ib = (b.get("confidence") or {}).get("interval")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (va, vb))
    if numbers and ia and ib:
        return bool(ia[0] <= ib[1] and ib[0] <= ia[1])
    return bool(numbers and va == vb)


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Every changed observation between two ``report.json`` documents, sorted."""
    a, b = _flat(old), _flat(new)
    out = []
    for k in sorted(set(a) | set(b)):
        target, key, fam = k
        oa, ob = a.get(k), b.get(k)
        if oa is None and ob is not None:
            out.append(
                Change(target, key, fam, "added", None, ob["value"], None, ob["verdict"], False)
            )
        elif ob is None and oa is not None:
            out.append(
                Change(target, key, fam, "removed", oa["value"], None, oa["verdict"], None, True)
            )
        elif oa is not None and ob is not None:
            if _same_value(oa, ob) and oa["verdict"] == ob["verdict"]:
                continue
            worse = RANK.get(ob["verdict"], 1) > RANK.get(oa["verdict"], 1)
            out.append(
                Change(target, key, fam, "changed", oa["value"], ob["value"], oa["verdict"],
                       ob["verdict"], worse)
            )  # fmt: skip
    return out


def render(changes: list[Change]) -> str:
    if not changes:
        return "no changes"
    regressions = sum(c.regression for c in changes)
    lines = [c.text() for c in changes]
    lines.append(f"{len(changes)} change(s), {regressions} regression(s)")
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "diff",
        help="compare two run bundles; exit 1 on regressions",
        description="List the observations that changed between bundle A (before) and B "
        "(after). Exit status 1 when a verdict got worse or an observation disappeared.",
    )
    p.add_argument("a", type=Path, help="the earlier bundle (or its report.json)")
    p.add_argument("b", type=Path, help="the later bundle (or its report.json)")
    p.add_argument("--json", action="store_true", help="the changes as JSON")
    p.set_defaults(func=cmd_diff)


def cmd_diff(args: argparse.Namespace) -> int:
    try:
        old, new = _report(args.a), _report(args.b)
    except (OSError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    changes = diff(old, new)
    if args.json:
        print(json.dumps([asdict(c) for c in changes], indent=2))
    else:
        print(render(changes))
    return 1 if any(c.regression for c in changes) else 0


def _report(path: Path) -> dict[str, Any]:
    """A bundle's report.json; a bundle without one (a run that never rendered) is built."""
    if path.is_dir() and not (path / "report.json").exists():
        from harness.report.model import build

        return build(path)
    return load(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hil")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["diff", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))
