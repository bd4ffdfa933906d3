"""``hil lab up/status/down``: a lab that stays up between commands.

``hil lab up`` starts a **keeper**: a background process that owns the lab (its pid is in every
namespace name), brings it up, writes a state file, and answers a small control socket until
``hil lab down`` (or SIGTERM/SIGINT) makes it tear everything down. The agents of the targets
are pipes of the keeper's children, so other processes reach them through the keeper
(``{"op": "agent", "target": ..., "line": ...}``). If the keeper is killed with SIGKILL, its
namespaces outlive it; the next ``hil lab up`` or ``hil lab down`` removes them (their owner pid
is dead) together with the processes still running inside.

State lives in ``$TCP_HIL_RUN`` (default ``/run/tcp-hil``): ``<lab>.json`` and ``<lab>.sock``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness import vnet
from harness.lab.model import Lab
from harness.lab.virtual import VirtualLab
from targets.agent.client import Agent, AgentError

UP_TIMEOUT_S = 120.0  # a cold lwIP build is part of a first bring-up


def run_dir() -> Path:
    return Path(os.environ.get("TCP_HIL_RUN", "/run/tcp-hil"))


def state_path(lab: Lab) -> Path:
    return run_dir() / f"{lab.name}.json"


def sock_path(lab: Lab) -> Path:
    return run_dir() / f"{lab.name}.sock"


def read_state(lab: Lab) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(state_path(lab).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


def _write_state(lab: Lab, data: dict[str, Any]) -> None:
    path = state_path(lab)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


# -- the keeper process ------------------------------------------------------------------


def keep(lab: Lab, lab_path: Path, logdir: Path) -> int:
    """Own the lab until told to stop. Runs in the background process ``hil lab up`` starts."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run_dir().mkdir(parents=True, exist_ok=True)
    started = time.time()
    base = {"pid": os.getpid(), "lab": lab.name, "lab_file": str(lab_path.resolve())}
    base |= {"logdir": str(logdir), "started": started}
    _write_state(lab, {**base, "status": "starting"})
    server: socketserver.UnixStreamServer | None = None
    with VirtualLab(lab, logdir, progress=lambda m: print(m, flush=True)) as vlab:
        try:
            vlab.up(strict=False)
            status = "up" if not vlab.errors else "partial" if vlab.nodes else "failed"
            _write_state(lab, {**base, "status": status, **vlab.state()})
            if status == "failed":
                return 1
            server = _control_server(lab, vlab, stop)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            while not stop.wait(0.5):
                pass
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
            with contextlib.suppress(FileNotFoundError):
                sock_path(lab).unlink()
            _write_state(lab, {**base, "status": "stopping"})
    with contextlib.suppress(FileNotFoundError):
        state_path(lab).unlink()
    return 0


def _control_server(
    lab: Lab, vlab: VirtualLab, stop: threading.Event
) -> socketserver.UnixStreamServer:
    locks = {name: threading.Lock() for name in vlab.nodes}

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for raw in self.rfile:
                try:
                    req = json.loads(raw)
                    reply = answer(req)
                except Exception as exc:  # a bad request must not end the keeper
                    reply = {"error": f"{type(exc).__name__}: {exc}"}
                self.wfile.write(json.dumps(reply).encode() + b"\n")

    def answer(req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "state":
            state = vlab.state()
            for name, node in vlab.nodes.items():
                state["targets"][name]["alive"] = node.driver.alive()
                state["targets"][name]["build"] = node.driver.build_info()
            return state
        if op in ("agent", "raw"):
            node = vlab.node(str(req["target"]))
            agent = node.driver.agent()
            if agent is None:
                return {"err": "none", "text": f"{node.spec.name} has no agent"}
            with locks[node.spec.name]:
                if op == "raw":
                    agent.write_raw(str(req["data"]).encode("latin-1"))
                    return {"ok": []}
                try:
                    return {"ok": agent.command(str(req["line"]), float(req.get("timeout", 30)))}
                except AgentError as exc:
                    return {"err": exc.code, "text": exc.text}
        if op == "down":
            stop.set()
            return {"ok": []}
        return {"error": f"unknown op {op!r}"}

    path = sock_path(lab)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return socketserver.ThreadingUnixStreamServer(str(path), Handler)


def control(lab: Lab, request: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """One request to a running keeper."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path(lab)))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply: dict[str, Any] = json.loads(data)
    return reply


# -- the commands ------------------------------------------------------------------------


def up(lab: Lab, lab_path: Path, logdir: Path | None = None) -> tuple[int, str]:
    """Start a keeper and wait until the lab is up. Returns (exit code, message)."""
    state = read_state(lab)
    if state is not None and vnet.pid_alive(int(state.get("pid", 0))):
        return 1, f"lab {lab.name} is already up (keeper pid {state['pid']}); hil lab down first"
    removed = _collect(lab)
    run_dir().mkdir(parents=True, exist_ok=True)
    logdir = logdir or run_dir() / f"{lab.name}-logs"
    logdir.mkdir(parents=True, exist_ok=True)
    log = open(logdir / "keeper.log", "ab")  # noqa: SIM115 - handed to the child
    t0 = time.monotonic()
    argv = [sys.executable, "-m", "harness.cli", "lab", "keep", "--lab", str(lab_path)]
    proc = subprocess.Popen(
        [*argv, "--logs", str(logdir)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # survives the terminal; a Ctrl-C here does not reach it
    )
    log.close()
    note = f"removed leftovers of a killed run: {', '.join(removed)}\n" if removed else ""
    while time.monotonic() - t0 < UP_TIMEOUT_S:
        state = read_state(lab)
        if proc.poll() is not None:
            tail = (logdir / "keeper.log").read_text(errors="replace")[-2000:]
            return 1, f"{note}lab {lab.name} did not come up:\n{tail}"
        if state is not None and state.get("pid") == proc.pid and state["status"] != "starting":
            took = time.monotonic() - t0
            errors = state.get("errors") or {}
            lines = [
                f"{note}lab {lab.name}: {state['status']} in {took:.2f} s (keeper pid {proc.pid})"
            ]
            lines += [f"  {e}" for e in errors.values()]
            return (0 if not errors else 1), "\n".join(lines)
        time.sleep(0.05)
    return 1, f"{note}lab {lab.name}: not up after {UP_TIMEOUT_S:g} s; see {logdir}/keeper.log"


def down(lab: Lab, timeout_s: float = 30.0) -> tuple[int, str]:
    state = read_state(lab)
    msgs = []
    if state is not None:
        pid = int(state.get("pid", 0))
        if pid and vnet.pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while vnet.pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if vnet.pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                msgs.append(f"keeper pid {pid} did not stop in {timeout_s:g} s; killed")
            else:
                msgs.append(f"lab {lab.name}: down (keeper pid {pid})")
    removed = _collect(lab)
    if removed:
        msgs.append(f"removed: {', '.join(removed)}")
    if not msgs:
        msgs.append(f"lab {lab.name} is not up")
    return 0, "\n".join(msgs)


def _collect(lab: Lab) -> list[str]:
    """Remove what a dead keeper of this lab left: namespaces (and their processes), files."""
    removed = vnet.gc_stale(vnet.PREFIX)
    state = read_state(lab)
    if state is not None and not vnet.pid_alive(int(state.get("pid", 0))):
        for path in (state_path(lab), sock_path(lab)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return removed


class KeeperAgent(Agent):
    """A target's agent reached through the keeper of a running lab (``hil lab up``): the same
    client API, with each command relayed over the control socket."""

    def __init__(self, lab: Lab, target: str, timeout_s: float = 5.0) -> None:
        super().__init__(-1, -1, timeout_s)
        self.lab = lab
        self.target = target

    def write_raw(self, data: bytes) -> None:
        reply = control(
            self.lab, {"op": "raw", "target": self.target, "data": data.decode("latin-1")}
        )
        if "ok" not in reply:
            raise AgentError("(raw)", str(reply.get("err", "internal")), str(reply))

    def command(self, line: str, timeout_s: float | None = None) -> list[str]:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        request = {"op": "agent", "target": self.target, "line": line, "timeout": timeout}
        reply = control(self.lab, request, timeout + 5)
        if "ok" in reply:
            return [str(w) for w in reply["ok"]]
        if "err" in reply:
            raise AgentError(line, str(reply["err"]), str(reply.get("text", "")))
        raise AgentError(line, "internal", str(reply.get("error", reply)))
