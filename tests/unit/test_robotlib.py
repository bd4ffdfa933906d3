"""The Robot keyword library without a lab: every keyword documented and typed so Robot converts
its arguments, and the failures a user meets before any target is up (a bad lab file, the link
impairment that does not exist yet) say what to do."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from robot.libdocpkg import LibraryDocumentation
from robot.running import TypeInfo

from harness.lab.load import LabError
from harness.robotlib import TcpHil


def test_every_keyword_and_argument_is_documented_and_typed() -> None:
    lib = LibraryDocumentation("harness.robotlib.TcpHil")
    assert lib.scope == "GLOBAL"
    assert len(lib.doc) > 1000 and "= Failure messages =" in lib.doc
    names = {kw.name for kw in lib.keywords}
    assert {"Bring Lab Up", "Bring Lab Down", "Open Connection To", "Send Data", "Expect Data",
            "Send And Expect", "Close Connection", "Send Bytes And Expect Echo", "Run Probe",
            "Feature Should Be", "Feature Should Be Within", "Get Feature",
            "Skip Unless Target Has", "Set Link Impairment"} <= names  # fmt: skip
    for kw in lib.keywords:
        assert len(kw.doc) > 40, f"{kw.name}: no documentation"
        for arg in kw.args:
            if arg.kind != arg.VAR_POSITIONAL:
                assert arg.type is not None, f"{kw.name}: argument {arg.name} has no type"


@pytest.mark.parametrize(
    ("text", "value"),
    [("250", 250), ("40.5", 40.5), ("True", True), ("false", False), ("None", None),
     ("SND.NXT-1, 0 B", "SND.NXT-1, 0 B")],
)  # fmt: skip
def test_expected_values_convert_to_the_type_they_look_like(text: str, value: object) -> None:
    """Robot passes every argument as text: "250" must become the number 250 and "True" the
    Boolean, or a feature would never equal its expected value."""
    hint = typing.get_type_hints(TcpHil.feature_should_be)["expected"]
    got = TypeInfo.from_type_hint(hint).convert(text)
    assert got == value and type(got) is type(value)


def test_a_bad_lab_file_fails_bring_lab_up_with_file_and_line(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text("version: 1\nname: x\ntargets:\n  - name: a\n    stack: nosuch\n")
    with pytest.raises(LabError) as err:
        TcpHil(lab=str(lab), out=str(tmp_path / "out")).bring_lab_up()
    assert str(err.value).startswith(f"{lab}:5: "), err.value  # the file and the line
    assert "'nosuch'" in str(err.value) and "linux, local, lwip" in str(err.value)


def test_link_impairment_fails_with_what_to_use_meanwhile() -> None:
    with pytest.raises(NotImplementedError) as err:
        TcpHil().set_link_impairment("linux", loss="5%", delay="20ms")
    msg = str(err.value)
    assert "not available yet" in msg and "netem loss 5% delay 20ms" in msg, msg
    assert "docs/timeline.md" in msg
