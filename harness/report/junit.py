"""``junit.xml``: one test case per probe x target, for CI systems that read JUnit results.

A probe is a test of a target against the standard, so its outcome maps onto JUnit's:

* any observation **deviates** -> ``<failure>`` (the stack does something the RFCs forbid or
  advise against: what CI should go red on), the deviating keys in the message;
* the probe **raised** (target crashed, did not answer, agent command missing) -> ``<error>``,
  with the exception; a probe **missing** from a partial run is an ``<error>`` too ("not run"),
  so a partial bundle never passes as green;
* nothing decided -- every key inconclusive or not applicable (no agent, option off) ->
  ``<skipped>`` with the reasons;
* otherwise the case passes; inconclusive keys of a passing probe are listed in its
  ``<system-out>`` with every other observation.

One ``<testsuite>`` per target (``classname`` ``tcp-hil.<target>``), in the common Jenkins /
Ant layout: ``testsuites > testsuite > testcase > failure|error|skipped, system-out``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

__all__ = ["render"]


def _observations(t: dict[str, Any], pid: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(key, family, entry) of every observation probe ``pid`` made on target ``t``."""
    out = []
    for key, f in t["features"].items():
        for fam, o in (f.get("families") or {"": f}).items():
            if o["probe"] == pid:
                out.append((key, fam, o))
    return out


def _line(key: str, fam: str, o: dict[str, Any]) -> str:
    label = key + (f" [{fam}]" if fam else "")
    return f"{label} = {o['value']!r}: {o['verdict']}" + (
        f" -- {o['detail']}" if o["detail"] else ""
    )


def _case(suite: ET.Element, target: str, pid: str, p: dict[str, Any], t: dict[str, Any]) -> str:
    case = ET.SubElement(
        suite,
        "testcase",
        name=f"{pid} {p['title']}".strip(),
        classname=f"tcp-hil.{target}",
        time=f"{float(p['seconds'] or 0):.3f}",
    )
    obs = _observations(t, pid)
    lines = [_line(k, f, o) for k, f, o in obs]
    status = str(p["status"])
    if status == "deviates":
        bad = [_line(k, f, o) for k, f, o in obs if o["verdict"] == "deviates"]
        el = ET.SubElement(
            case, "failure", message="deviates: " + "; ".join(bad)[:500], type="deviation"
        )
        el.text = "\n".join(bad)
    elif status == "error":
        el = ET.SubElement(case, "error", message=str(p["error"])[:500], type="probe-error")
        el.text = str(p["error"])
    elif status == "missing":
        ET.SubElement(
            case, "error", message="not run: the run is partial (hil run --resume)", type="missing"
        )
    elif status in ("inconclusive", "not-applicable"):
        why = sorted({o["detail"] or o["verdict"] for _, _, o in obs})
        ET.SubElement(case, "skipped", message=f"{status}: " + "; ".join(why)[:500])
    if lines:
        ET.SubElement(case, "system-out").text = "\n".join(lines)
    return status


def render(report: dict[str, Any]) -> str:
    run = report["run"]
    root = ET.Element("testsuites", name="tcp-hil")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for name, t in report["targets"].items():
        suite = ET.SubElement(root, "testsuite", name=f"tcp-hil.{name}")
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        seconds = 0.0
        for pid, p in t["probes"].items():
            status = _case(suite, name, pid, p, t)
            counts["tests"] += 1
            counts["failures"] += status == "deviates"
            counts["errors"] += status in ("error", "missing")
            counts["skipped"] += status in ("inconclusive", "not-applicable")
            seconds += float(p["seconds"] or 0)
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
        suite.set("time", f"{seconds:.3f}")
        if run.get("start"):
            suite.set("timestamp", str(run["start"])[:19])
        if run.get("host"):
            suite.set("hostname", str(run["host"]))
        props = ET.Element("properties")
        for k, v in (("stack", t["stack"]), ("tool_version", run.get("tool_version"))):
            ET.SubElement(props, "property", name=k, value=str(v))
        suite.insert(0, props)
        total_time += seconds
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
