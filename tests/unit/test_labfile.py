"""The shipped lab file validates under the lab model, and the interim ``hil run`` reader takes
its local targets from it (messages name the file, the line, the key and the fix)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness.cli import main
from harness.lab.model import json_schema
from harness.labfile import LabFileError, load

REPO = Path(__file__).resolve().parents[2]
GOOD = """version: 1
targets:
  - {name: local, stack: local, mac: "02:00:00:00:00:02", ipv4: 10.77.0.2/24,
     ipv6: "2001:db8:77::2/64", tester: {ipv4: 10.77.0.1/24, ipv6: "2001:db8:77::1/64"},
     services: {udp-echo: 7}, tcp: {nagle: false}}
"""


def test_shipped_lab_loads() -> None:
    lab = load(REPO / "lab.yaml")
    assert [t.name for t in lab.targets] == ["local"]
    kinds = {s.kind: s.port for s in lab.targets[0].services}
    assert kinds == {"echo": 7, "discard": 9, "chargen": 19, "udp-echo": 7}
    assert lab.targets[0].tester_ipv4 == "10.77.0.1/24"


def test_shipped_lab_validates_against_the_published_schema() -> None:
    jsonschema.validate(yaml.safe_load((REPO / "lab.yaml").read_text()), json_schema())


def test_hil_lab_schema_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()


def test_tcp_overrides_become_serve_arguments(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(GOOD)
    assert load(path).targets[0].tcp == ["nagle=off"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD.replace("version: 1", "version: 7"),
            ":1: version 7 is not supported; this tool reads 'version: 1'",
        ),
        (
            GOOD.replace("ipv4: 10.77.0.2/24", "ipv4: 10.77.0.300/24"),
            ":3: targets[0] (local).ipv4: '10.77.0.300/24' is not ADDRESS/PREFIX",
        ),
        (
            GOOD.replace('mac: "02:00:00:00:00:02"', "mac: nope"),
            ":3: targets[0] (local).mac: String should match pattern",
        ),
        (
            GOOD.replace("udp-echo: 7", "ftp: 21"),
            ":5: targets[0] (local).services.ftp: unknown key 'ftp'; valid keys: echo, discard, "
            "chargen, udp-echo",
        ),
        (
            GOOD.replace("stack: local", "stack: linux").replace(", tcp: {nagle: false}", ""),
            "hil run needs at least one target with stack: local",
        ),
        (
            GOOD.replace(', tester: {ipv4: 10.77.0.1/24, ipv6: "2001:db8:77::1/64"}', ""),
            "targets[0] (local): hil run needs tester.ipv4, tester.ipv6 set",
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
