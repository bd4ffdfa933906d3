"""The pytest plugin's usage errors and its quiet default, without a lab coming up (no root).

A lab engineer's typo -- a bad lab file, an unknown target, feature or probe -- must stop the
run at collection with a message that names the mistake and the fix (no traceback through the
plugin), not become a skip.
"""

from __future__ import annotations

import pytest

LAB = """\
version: 1
name: plugin-unit
targets:
  - name: alpha
    stack: local
    mac: "02:00:00:00:00:02"
    ipv4: 10.77.0.2/24
    tester: {ipv4: 10.77.0.1/24}
    services: {echo: 7}
  - name: beta
    stack: linux
    mac: "02:00:00:00:01:02"
    ipv4: 10.77.1.2/24
    tester: {ipv4: 10.77.1.1/24}
    services: {echo: 7}
"""

USES_TARGET = """
def test_x(target):
    pass
"""


def test_plugin_is_registered_by_entry_point(pytester: pytest.Pytester) -> None:
    res = pytester.runpytest("--help")
    res.stdout.fnmatch_lines(["*tcp-hil*", "*--lab=FILE*", "*--target=NAME*", "*--hil-out=DIR*"])
    res = pytester.runpytest("--markers")
    res.stdout.fnmatch_lines(["*@pytest.mark.stack(*stacks)*", "*@pytest.mark.needs(*features)*",
                              "*@pytest.mark.probe(*ids)*"])  # fmt: skip


def test_tests_without_its_fixtures_bring_nothing_up(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    res = pytester.runpytest("--lab", "does-not-exist.yaml")
    res.assert_outcomes(passed=1)
    assert not (pytester.path / "hil-out").exists()


def test_targets_become_parameters_with_their_names_as_ids(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", lab=LAB)
    pytester.makepyfile(USES_TARGET)
    res = pytester.runpytest("--collect-only", "-q")
    res.stdout.fnmatch_lines(["*test_x[[]alpha[]]", "*test_x[[]beta[]]"])
    res = pytester.runpytest("--collect-only", "-q", "--target", "beta")
    res.stdout.fnmatch_lines(["*test_x[[]beta[]]"])
    res.stdout.no_fnmatch_line("*alpha*")


def test_own_parametrisation_of_target_wins(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", lab=LAB)
    pytester.makepyfile("""
import pytest
@pytest.mark.parametrize("target", ["beta"], indirect=True)
def test_x(target):
    pass
""")
    res = pytester.runpytest("--collect-only", "-q")
    res.stdout.fnmatch_lines(["*test_x[[]beta[]]"])
    res.stdout.no_fnmatch_line("*alpha*")


def test_a_conftest_fixture_named_target_is_left_alone(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("import pytest\n@pytest.fixture\ndef target():\n    return 42\n")
    pytester.makepyfile("def test_x(target):\n    assert target == 42\n")
    pytester.runpytest("--lab", "nowhere.yaml").assert_outcomes(passed=1)


def test_bad_lab_file_names_file_line_and_fix(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", lab=LAB.replace("stack: linux", "stack: linxu"))
    pytester.makepyfile(USES_TARGET)
    res = pytester.runpytest()
    assert res.ret == pytest.ExitCode.INTERRUPTED  # a collection error: nothing runs
    res.stdout.fnmatch_lines(["*tcp-hil:*lab.yaml:11: *linxu*"])


def test_missing_lab_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_TARGET)
    res = pytester.runpytest("--lab", "nowhere.yaml")
    assert res.ret == pytest.ExitCode.INTERRUPTED  # a collection error: nothing runs
    res.stdout.fnmatch_lines(["*tcp-hil:*nowhere.yaml*"])


def test_unknown_target_lists_the_lab_targets(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", lab=LAB)
    pytester.makepyfile(USES_TARGET)
    res = pytester.runpytest("--target", "gamma")
    assert res.ret == pytest.ExitCode.INTERRUPTED  # a collection error: nothing runs
    res.stdout.fnmatch_lines(["*unknown target(s) gamma*has alpha, beta*"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('needs("sak")', "*test_x*needs*unknown feature 'sak'*sack=sack_permitted*"),
        ('probe("P99")', "*test_x*probe*unknown probe(s) P99*the catalogue has P1, P1b, P2*"),
    ],
)
def test_marker_typos_are_usage_errors(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makefile(".yaml", lab=LAB)
    pytester.makepyfile(f"import pytest\n@pytest.mark.{marker}\ndef test_x(target):\n    pass\n")
    res = pytester.runpytest()
    assert res.ret == pytest.ExitCode.INTERRUPTED  # a collection error: nothing runs
    res.stdout.fnmatch_lines([message])


def test_stack_marker_skips_before_any_bring_up(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", lab=LAB)
    pytester.makepyfile(
        'import pytest\n@pytest.mark.stack("lwip")\ndef test_x(target):\n    pass\n'
    )
    res = pytester.runpytest("-rs")
    res.assert_outcomes(skipped=2)
    res.stdout.fnmatch_lines(["*alpha runs local; the test is for lwip*",
                              "*beta runs linux; the test is for lwip*"])  # fmt: skip
