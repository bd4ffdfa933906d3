"""``hil lab ...``: schema, check, up, status, down, and a line to a target's agent."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from harness.lab import keeper
from harness.lab.check import check
from harness.lab.load import LabError
from harness.lab.load import load as load_lab
from harness.lab.model import Lab, json_schema

DEFAULT_LAB = Path("lab.yaml")


def add_parser(sub: Any) -> None:
    lab = sub.add_parser("lab", help="the lab file and the lab it describes")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)

    def with_lab(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--lab", type=Path, default=DEFAULT_LAB, help="lab file (default lab.yaml)")
        return p

    lab_sub.add_parser(
        "schema", help="print the lab file's JSON Schema (for editor completion)"
    ).set_defaults(func=cmd_schema)
    p = with_lab(lab_sub.add_parser("check", help="validate a lab file and this machine"))
    p.add_argument("--no-resources", action="store_true", help="only validate the file")
    p.set_defaults(func=cmd_check)
    p = with_lab(lab_sub.add_parser("up", help="bring the lab up and keep it up"))
    p.add_argument("--logs", type=Path, default=None, help="consoles and build logs here")
    p.set_defaults(func=cmd_up)
    p = with_lab(lab_sub.add_parser("status", help="what runs, and does it answer"))
    p.add_argument("--json", action="store_true", help="machine-readable")
    p.add_argument("--quick", action="store_true", help="skip the service checks")
    p.set_defaults(func=cmd_status)
    with_lab(lab_sub.add_parser("down", help="tear the lab down")).set_defaults(func=cmd_down)
    p = with_lab(lab_sub.add_parser("agent", help="send one agent command to a target"))
    p.add_argument("target")
    p.add_argument("words", nargs="+", metavar="WORD")
    p.set_defaults(func=cmd_agent)
    p = with_lab(
        lab_sub.add_parser(
            "conformance", help="run the agent conformance suite against a running target"
        )
    )
    p.add_argument("target")
    p.set_defaults(func=cmd_conformance)
    p = with_lab(lab_sub.add_parser("keep", help=argparse.SUPPRESS))
    p.add_argument("--logs", type=Path, required=True)
    p.set_defaults(func=cmd_keep)


def _load(path: Path) -> Lab | None:
    try:
        return load_lab(path)
    except LabError as exc:
        print(exc, file=sys.stderr)
        return None


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    lab = _load(args.lab)
    if lab is None:
        return 2
    for t in lab.targets:
        where = "board " + t.link.board.nic if t.link.board else f"virtual {t.link.virtual.kind}"  # type: ignore[union-attr]
        addrs = ", ".join(a for a in (t.ipv4, t.ipv6) if a)
        print(f"{t.name}: {t.stack} ({where}) {addrs}; services {t.services.ports()}")
    if args.no_resources:
        print(f"{args.lab}: {len(lab.targets)} target(s), valid")
        return 0
    problems = check(lab)
    for p in problems:
        print(f"{args.lab}: {p.where}: {p.message}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.lab}: {len(lab.targets)} target(s), valid; this machine can run them")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    lab = _load(args.lab)
    if lab is None:
        return 2
    code, msg = keeper.up(lab, args.lab, args.logs)
    print(msg, file=sys.stderr if code else sys.stdout)
    return code


def cmd_keep(args: argparse.Namespace) -> int:
    lab = _load(args.lab)
    if lab is None:
        return 2
    return keeper.keep(lab, args.lab, args.logs)


def cmd_down(args: argparse.Namespace) -> int:
    lab = _load(args.lab)
    if lab is None:
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a half-done teardown helps nobody
    code, msg = keeper.down(lab)
    print(msg)
    return code


def cmd_agent(args: argparse.Namespace) -> int:
    lab = _load(args.lab)
    if lab is None:
        return 2
    try:
        reply = keeper.control(
            lab, {"op": "agent", "target": args.target, "line": " ".join(args.words)}
        )
    except OSError as exc:
        print(f"lab {lab.name} is not up ({exc}); hil lab up first", file=sys.stderr)
        return 1
    if "ok" in reply:
        print(" ".join(["ok", *reply["ok"]]))
        return 0
    print(f"err {reply.get('err', '')} {reply.get('text', reply.get('error', ''))}".strip())
    return 1


def conformance(lab: Lab, target: str) -> list[Any]:
    """The agent conformance suite (docs/agent.md) against ``target`` of the running ``lab``."""
    from targets.agent import conformance as suite

    spec = lab.target(target)
    live = keeper.control(lab, {"op": "state"})["targets"][target]
    tester = suite.Tester.in_netns(
        live["tester_netns"],
        tester_ipv4=spec.tester.ipv4,
        target_ipv4=spec.ipv4,
        tester_ipv6=spec.tester.ipv6,
        target_ipv6=spec.ipv6,
    )
    return suite.run(keeper.KeeperAgent(lab, target), tester)


def cmd_conformance(args: argparse.Namespace) -> int:
    from targets.agent.conformance import table

    lab = _load(args.lab)
    if lab is None:
        return 2
    try:
        checks = conformance(lab, args.target)
    except (OSError, KeyError) as exc:
        print(f"lab {lab.name}: {exc}; is it up (hil lab up)?", file=sys.stderr)
        return 1
    print(table(checks))
    return 0 if all(c.passed for c in checks) else 1


def cmd_status(args: argparse.Namespace) -> int:
    lab = _load(args.lab)
    if lab is None:
        return 2
    state = keeper.read_state(lab)
    if state is None:
        print(f"lab {lab.name}: down")
        return 3
    try:
        live = keeper.control(lab, {"op": "state"})
    except OSError:
        print(
            f"lab {lab.name}: keeper pid {state.get('pid')} does not answer "
            f"(status {state.get('status')}); hil lab down cleans up"
        )
        return 1
    report = status_report(lab, state, live, checks=not args.quick)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_status(report))
    return 0 if report["healthy"] else 1


def status_report(
    lab: Lab, state: dict[str, Any], live: dict[str, Any], checks: bool
) -> dict[str, Any]:
    from harness.lab import level0
    from harness.lab.virtual import Tester

    out: dict[str, Any] = {
        "lab": lab.name,
        "keeper": state.get("pid"),
        "status": state.get("status"),
    }
    out["since"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.get("started", 0)))
    out["errors"] = live.get("errors", {})
    healthy = not out["errors"]
    targets: dict[str, Any] = {}
    for name, t in live.get("targets", {}).items():
        row = dict(t)
        healthy &= t.get("alive") is None
        if checks:
            tester = Tester(t["tester_netns"], t["tester_ifname"], "x", "x")
            results = level0.check_all(tester, t["addresses"], t["services"], size=64 * 1024)
            row["services_check"] = [r.__dict__ for r in results]
            healthy &= all(r.ok for r in results)
        try:
            reply = keeper.control(
                lab, {"op": "agent", "target": name, "line": "hello", "timeout": 5}
            )
        except OSError as exc:
            reply = {"error": str(exc)}
        row["agent"] = " ".join(reply["ok"]) if "ok" in reply else None
        if "ok" not in reply and reply.get("err") != "none":
            healthy = False
            row["agent_error"] = reply.get("text") or reply.get("error")
        targets[name] = row
    out["targets"] = targets
    out["healthy"] = healthy
    return out


def render_status(report: dict[str, Any]) -> str:
    head = f"lab {report['lab']}: {report['status']}"
    lines = [f"{head} (keeper pid {report['keeper']}, since {report['since']})"]
    for name, t in report["targets"].items():
        proc = "running" if t.get("alive") is None else f"DOWN: {t['alive']}"
        lines.append(f"  {name} ({t['stack']}): {proc}; pids {t['pids']}; up in {t['up_s']} s")
        tester = f"tester {t['tester_netns']} ({t['tester_ifname']})"
        lines.append(f"    netns {t['netns']} ({t['ifname']}), {tester}")
        lines.append(f"    addresses {', '.join(t['addresses'].values())}")
        for r in t.get("services_check", []):
            mark = "ok" if r["ok"] else "FAIL"
            lines.append(f"    {r['service']:<8} {r['family']}: {mark} ({r['detail']})")
        if t.get("agent"):
            lines.append(f"    agent: {t['agent']}")
        elif t.get("agent_error"):
            lines.append(f"    agent: FAIL ({t['agent_error']})")
        else:
            lines.append("    agent: none")
    for err in report["errors"].values():
        lines.append(f"  error: {err}")
    lines.append("healthy" if report["healthy"] else "NOT healthy")
    return "\n".join(lines)
