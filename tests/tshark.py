"""tshark as the independent oracle for every capture the stack writes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHECKSUM_PREFS = [
    "-o",
    "ip.check_checksum:TRUE",
    "-o",
    "udp.check_checksum:TRUE",
    "-o",
    "tcp.check_checksum:TRUE",
]
PROBLEMS = (
    '_ws.malformed || _ws.expert.severity == "Error"'
    ' || ip.checksum.status == "Bad" || udp.checksum.status == "Bad"'
    ' || tcp.checksum.status == "Bad" || icmp.checksum.status == "Bad"'
    ' || icmpv6.checksum.status == "Bad"'
)


def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        raise RuntimeError("tshark is not installed (apt-get install tshark); .ci/run installs it")
    return path


def problems(pcap: Path) -> list[str]:
    """Frames tshark calls malformed or whose checksums it finds bad, one line each."""
    out = subprocess.run(
        [
            tshark(),
            "-n",
            "-r",
            str(pcap),
            *CHECKSUM_PREFS,
            "-Y",
            PROBLEMS,
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.col.Info",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


def fields(pcap: Path, *names: str, display_filter: str = "") -> list[list[str]]:
    argv = [tshark(), "-n", "-r", str(pcap), *CHECKSUM_PREFS, "-T", "fields"]
    if display_filter:
        argv += ["-Y", display_filter]
    for name in names:
        argv += ["-e", name]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    return [line.split("\t") for line in out.splitlines()]


def count(pcap: Path, display_filter: str = "") -> int:
    return len(fields(pcap, "frame.number", display_filter=display_filter))
