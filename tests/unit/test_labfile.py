"""The lab-file reader names the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.labfile import LabFileError, load

REPO = Path(__file__).resolve().parents[2]
GOOD = """version: 1
tester: {ipv4: 10.77.0.1/24, ipv6: "2001:db8:77::1/64"}
targets:
  - {name: local, stack: local, mac: "02:00:00:00:00:02", ipv4: 10.77.0.2/24,
     ipv6: "2001:db8:77::2/64", services: [udp-echo:7]}
"""


def test_shipped_lab_loads() -> None:
    lab = load(REPO / "lab.yaml")
    assert [t.name for t in lab.targets] == ["local"]
    assert lab.targets[0].services[0].kind == "udp-echo"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD.replace("version: 1", "version: 7"),
            "version 7 is not supported; this tool reads version: 1",
        ),
        (GOOD.replace("tester:", "testers:"), "the top level needs the key 'tester'"),
        (
            GOOD.replace("ipv4: 10.77.0.2/24", "ipv4: 10.77.0.300/24"),
            "targets[0].ipv4 is '10.77.0.300/24'",
        ),
        (
            GOOD.replace('mac: "02:00:00:00:00:02"', "mac: nope"),
            "targets[0].mac: not a MAC address",
        ),
        (GOOD.replace("udp-echo:7", "ftp:21"), "targets[0].services: unknown service 'ftp'"),
        (
            GOOD.replace("stack: local", "stack: lwip"),
            "has stack 'lwip'; this release runs only 'local'",
        ),
        (GOOD + "  - [", "not valid YAML"),
    ],
)
def test_bad_lab_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    with pytest.raises(LabFileError) as exc:
        load(path)
    assert str(path) in str(exc.value)
    assert message in str(exc.value)
