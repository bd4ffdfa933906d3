"""RFC 9293's requirement summary (Appendix B), the ids the report's coverage table is keyed by.

The table ships with the package (``rfc9293_requirements.csv``) so coverage is computed from the
repository alone. An id that appears on several rows of the RFC's table (MUST-15 for IPv4 and
for IPv6, MUST-56 for three ICMP messages) is one requirement with several feature lines.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["ID_PATTERN", "Requirement", "requirements"]

# MUST-n, SHLD-n, MAY-n; REC-n is the one "recommended" row of the table
ID_PATTERN = re.compile(r"^(MUST|SHLD|MAY|REC)-\d+$")


@dataclass(frozen=True)
class Requirement:
    id: str
    levels: tuple[str, ...]  # as printed: "MUST", "MUST NOT", "SHOULD", ...
    categories: tuple[str, ...]
    features: tuple[str, ...]

    @property
    def level(self) -> str:
        return " / ".join(self.levels)


def _rows() -> list[dict[str, str]]:
    text = resources.files("harness.report").joinpath("rfc9293_requirements.csv").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


@cache
def requirements() -> dict[str, Requirement]:
    """Requirement id -> :class:`Requirement`, in the RFC table's order of first appearance."""
    merged: dict[str, tuple[list[str], list[str], list[str]]] = {}
    for row in _rows():
        rid = row["reqid"].strip()
        if not ID_PATTERN.match(rid):
            raise ValueError(f"rfc9293_requirements.csv: bad requirement id {rid!r}")
        levels, cats, feats = merged.setdefault(rid, ([], [], []))
        for bucket, value in ((levels, row["level"]), (cats, row["category"])):
            if value.strip() and value.strip() not in bucket:
                bucket.append(value.strip())
        feats.append(row["feature"].strip())
    return {
        rid: Requirement(rid, tuple(lv), tuple(cat), tuple(ft))
        for rid, (lv, cat, ft) in merged.items()
    }
