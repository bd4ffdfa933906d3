"""The lab model: valid files load, and each malformed file gets its exact, actionable message
(file, line, key and the fix)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness.lab.load import LabError, parse
from harness.lab.model import LinuxTarget, LocalTarget, LwipTarget, NativeTarget, json_schema

P = Path("lab.yaml")

GOOD = """\
version: 1
name: twin
targets:
  - name: linux
    stack: linux
    ipv4: 10.77.1.2/24
    ipv6: 2001:db8:77:1::2/64
    tester: {ipv4: 10.77.1.1/24, ipv6: "2001:db8:77:1::1/64"}
    sysctl: {net.ipv4.tcp_sack: 0}
  - name: local
    stack: local
    ipv4: 10.77.2.2/24
    profile: lwip-default
    tcp: {nagle: off}
  - name: lwip
    stack: lwip
    ipv4: ${LWIP_V4:-10.77.3.2/24}
    lwipopts: {TCP_MSS: 1460}
  - name: riot
    stack: native
    ipv6: 2001:db8:77:4::2/64
    argv: [./riot.elf, "{tap}"]
    link: {board: {nic: enp3s0, console: "serial:///dev/ttyUSB0?baudrate=115200"}}
fixtures:
  power: {kind: scpi}
"""


def lab(text: str, **env: str) -> object:
    return parse(textwrap.dedent(text), P, env)


def test_good_lab_loads_with_typed_targets() -> None:
    result = lab(GOOD)
    kinds = [type(t) for t in result.targets]  # type: ignore[attr-defined]
    assert kinds == [LinuxTarget, LocalTarget, LwipTarget, NativeTarget]
    lw = result.target("lwip")  # type: ignore[attr-defined]
    assert lw.ipv4 == "10.77.3.2/24" and lw.services.ports() == {
        "echo": 7,
        "discard": 9,
        "chargen": 19,
    }
    assert result.target("riot").link.board.nic == "enp3s0"  # type: ignore[attr-defined]


def test_env_templating_substitutes() -> None:
    result = lab(GOOD, LWIP_V4="10.99.0.2/16")
    assert result.target("lwip").ipv4 == "10.99.0.2/16"  # type: ignore[attr-defined]


def test_shipped_and_good_labs_validate_against_the_json_schema() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = yaml.safe_load(GOOD.replace("${LWIP_V4:-10.77.3.2/24}", "10.77.3.2/24"))
    jsonschema.validate(doc, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**doc, "targets": [{"name": "x", "stack": "nope"}]}, schema)


BASE = "version: 1\ntargets:\n"

CASES: list[tuple[str, str, str]] = [
    (
        "unknown top-level key",
        "version: 1\nlabname: x\ntargets:\n  - {name: a, stack: local, ipv4: 10.0.0.2/24}\n",
        "lab.yaml:2: labname: unknown key 'labname'; did you mean 'name'? valid keys: "
        "version, name, imports, targets, fixtures",
    ),
    (
        "unknown target key with a suggestion",
        BASE + "  - name: a\n    stack: linux\n    ipv4: 10.0.0.2/24\n    sysctls: {}\n",
        "lab.yaml:6: targets[0] (a).sysctls: unknown key 'sysctls'; did you mean 'sysctl'? "
        "valid keys: name, stack, link, mac, ipv4, ipv6, tester, services, agent, build, sysctl, "
        "initcwnd, initrwnd",
    ),
    (
        "missing version",
        "targets: []\n",
        "lab.yaml:1: version None is not supported; this tool reads 'version: 1'",
    ),
    (
        "future version",
        "version: 2\ntargets: []\n",
        "lab.yaml:1: version 2 is not supported; this tool reads 'version: 1'",
    ),
    (
        "no targets",
        "version: 1\ntargets: []\n",
        "lab.yaml:2: 'targets' must list at least one target",
    ),
    (
        "unknown stack",
        BASE + "  - {name: a, stack: freertos, ipv4: 10.0.0.2/24}\n",
        "lab.yaml:3: targets[0] (a) has unknown stack 'freertos'; stacks: linux, local, lwip, "
        "native (others come from 'imports:')",
    ),
    (
        "missing stack",
        BASE + "  - {name: a, ipv4: 10.0.0.2/24}\n",
        "lab.yaml:3: targets[0] (a) needs 'stack'; stacks: linux, local, lwip, native "
        "(others come from 'imports:')",
    ),
    (
        "address without prefix",
        BASE + "  - name: a\n    stack: local\n    ipv4: 10.0.0.2\n",
        "lab.yaml:5: targets[0] (a).ipv4: '10.0.0.2' needs a prefix length (e.g. 10.0.0.2/24)",
    ),
    (
        "IPv4 where IPv6 belongs",
        BASE + "  - name: a\n    stack: local\n    ipv6: 10.0.0.2/24\n",
        "lab.yaml:5: targets[0] (a).ipv6: '10.0.0.2/24' is not an IPv6 address",
    ),
    (
        "no address at all",
        BASE + "  - name: a\n    stack: local\n",
        "lab.yaml:3: targets[0] (a): a target needs an ipv4 or an ipv6 address (or both)",
    ),
    (
        "no services",
        BASE
        + "  - name: a\n    stack: local\n    ipv4: 10.0.0.2/24\n"
        + "    services: {echo: null, discard: null, chargen: null}\n",
        "lab.yaml:3: targets[0] (a): a target needs at least one service (echo, discard, chargen)",
    ),
    (
        "port out of range (wrong type of value)",
        BASE
        + "  - name: a\n    stack: local\n    ipv4: 10.0.0.2/24\n    services: {echo: 70000}\n",
        "lab.yaml:6: targets[0] (a).services.echo: Input should be less than or equal to 65535 "
        "(got 70000)",
    ),
    (
        "wrong type",
        BASE + "  - name: a\n    stack: lwip\n    ipv4: 10.0.0.2/24\n    lwipopts: [TCP_MSS]\n",
        "lab.yaml:6: targets[0] (a).lwipopts: Input should be a valid dictionary (got ['TCP_MSS'])",
    ),
    (
        "duplicate names",
        BASE
        + "  - {name: a, stack: local, ipv4: 10.0.0.2/24}\n"
        + "  - {name: a, stack: linux, ipv4: 10.0.1.2/24}\n",
        "lab.yaml:4: targets[1] (a): the name 'a' is already used by targets[0]; names must be "
        "unique",
    ),
    (
        "duplicate address",
        BASE
        + "  - {name: a, stack: local, ipv4: 10.0.0.2/24}\n"
        + "  - {name: b, stack: linux, ipv4: 10.0.0.2/24}\n",
        "lab.yaml:4: targets[1] (b).ipv4: address 10.0.0.2 is already used by targets[0] (a).ipv4;"
        " every address in a lab must be unique",
    ),
    (
        "tester address equals the target's",
        BASE + "  - {name: a, stack: local, ipv4: 10.0.0.2/24, tester: {ipv4: 10.0.0.2/24}}\n",
        "lab.yaml:3: targets[0] (a).tester.ipv4: address 10.0.0.2 is already used by "
        "targets[0] (a).ipv4; every address in a lab must be unique",
    ),
    (
        "tester in another subnet",
        BASE + "  - {name: a, stack: local, ipv4: 10.0.0.2/24, tester: {ipv4: 10.0.9.1/24}}\n",
        "lab.yaml:3: targets[0] (a).tester.ipv4: 10.0.9.1/24 is not in the target's subnet "
        "10.0.0.0/24; put both ends of the link in one subnet",
    ),
    (
        "same NIC for two boards",
        BASE
        + "  - {name: a, stack: native, ipv4: 10.0.0.2/24, argv: [x], link: {board: {nic: e1}}}\n"
        + "  - {name: b, stack: native, ipv4: 10.0.1.2/24, argv: [x], link: {board: {nic: e1}}}\n",
        "lab.yaml:4: targets[1] (b).link.board.nic: e1 is already the link of targets[0] (a); "
        "each board needs its own NIC",
    ),
    (
        "both virtual and board",
        BASE
        + "  - {name: a, stack: local, ipv4: 10.0.0.2/24, link: {virtual: {}, board: {nic: e}}}\n",
        "lab.yaml:3: targets[0] (a).link: give exactly one of 'virtual' or 'board'",
    ),
    (
        "unknown TCP profile",
        BASE + "  - {name: a, stack: local, ipv4: 10.0.0.2/24, profile: fulll}\n",
        "lab.yaml:3: targets[0] (a): profile 'fulll' is unknown; profiles: full, linux-like, "
        "lwip-default, riot-gnrc, uip",
    ),
    (
        "non-net sysctl",
        BASE + "  - {name: a, stack: linux, ipv4: 10.0.0.2/24, sysctl: {kernel.panic: 1}}\n",
        "lab.yaml:3: targets[0] (a).sysctl: sysctl 'kernel.panic': only per-namespace net.* keys "
        "can be set (e.g. net.ipv4.tcp_sack)",
    ),
    (
        "bad lwIP option name",
        BASE + "  - {name: a, stack: lwip, ipv4: 10.0.0.2/24, lwipopts: {tcp_mss: 536}}\n",
        "lab.yaml:3: targets[0] (a).lwipopts: lwipopts 'tcp_mss' is not an lwIP option name "
        "(e.g. TCP_MSS)",
    ),
    (
        "unknown argv placeholder",
        BASE + "  - {name: a, stack: native, ipv4: 10.0.0.2/24, argv: [x, '{iface}']}\n",
        "lab.yaml:3: targets[0] (a).argv: argv placeholder {iface} is unknown; use {tap}, "
        "{ifname}, {netns}, {mac}, {ipv4}, {ipv6}, {ipv4_addr}, {ipv6_addr}, {name}, {echo}, "
        "{discard}, {chargen}",
    ),
    (
        "name with capitals",
        BASE + "  - {name: Linux, stack: linux, ipv4: 10.0.0.2/24}\n",
        "lab.yaml:3: targets[0] (Linux).name: String should match pattern "
        "'^[a-z][a-z0-9-]{0,14}$' (got 'Linux')",
    ),
    (
        "duplicate key",
        "version: 1\ntargets:\n  - name: a\n    stack: local\n    stack: linux\n",
        "lab.yaml:5: 'stack' appears twice (first on line 4)",
    ),
    (
        "unset environment variable",
        BASE + "  - {name: a, stack: local, ipv4: ${TARGET_V4}}\n",
        "lab.yaml:3: ${TARGET_V4} is not set; export TARGET_V4=... or write ${TARGET_V4:-default}",
    ),
    (
        "not YAML",
        "version: 1\ntargets: [\n",
        "lab.yaml:3: not valid YAML: expected the node content, but found '<stream end>'",
    ),
    (
        "import that fails",
        "version: 1\nimports: [no_such_driver_module]\n"
        + "targets:\n  - {name: a, stack: local, ipv4: 10.0.0.2/24}\n",
        "lab.yaml:2: imports: cannot import 'no_such_driver_module': No module named "
        "'no_such_driver_module'",
    ),
]


@pytest.mark.parametrize(("why", "text", "message"), CASES, ids=[c[0] for c in CASES])
def test_malformed_lab_gets_an_exact_actionable_message(why: str, text: str, message: str) -> None:
    with pytest.raises(LabError) as exc:
        parse(text, P, {})
    assert str(exc.value) == message


def test_every_problem_is_reported_at_once() -> None:
    text = BASE + "  - {name: a, stack: nope}\n  - {name: b, stack: local, ipv4: 1.2.3.4}\n"
    with pytest.raises(LabError) as exc:
        parse(text, P, {})
    assert [line for line, _ in exc.value.problems] == [3, 4]


def test_resource_check_names_missing_nic_console_and_binary() -> None:
    from harness.lab.check import Problem, check

    text = """\
    version: 1
    targets:
      - name: board
        stack: native
        ipv4: 10.1.0.2/24
        argv: [/nonexistent/riot.elf, "{tap}"]
        link: {board: {nic: hilnosuch0, console: "serial:///dev/hil-no-such-tty?baudrate=115200"}}
    """
    problems = check(lab(text))  # type: ignore[arg-type]
    nics = ", ".join(sorted(p.name for p in Path("/sys/class/net").iterdir()))
    assert problems == [
        Problem(
            "targets[0] (board)",
            f"link.board.nic: no interface 'hilnosuch0' on this machine; have: {nics}",
        ),
        Problem(
            "targets[0] (board)",
            "link.board.console: /dev/hil-no-such-tty does not exist (board unplugged? udev name?)",
        ),
        Problem(
            "targets[0] (board)",
            "argv[0]: '/nonexistent/riot.elf' is not an executable file or a command on PATH; "
            "build your binary first and give its path",
        ),
    ]


def test_link_kind_must_suit_the_stack() -> None:
    text = """\
    version: 1
    targets:
      - name: lw
        stack: lwip
        ipv4: 10.1.0.2/24
        link: {virtual: {kind: veth}}
    """
    with pytest.raises(LabError) as exc:
        lab(text)
    assert str(exc.value) == (
        "lab.yaml:3: targets[0] (lw): link.virtual.kind 'veth' does not suit stack 'lwip'; "
        "use 'tap'"
    )


def test_out_of_tree_kind_comes_in_through_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """labgrid-style: a module named in ``imports:`` registers its own target kind, with its own
    keys validated as strictly as the built-in ones, and the JSON Schema offers it."""
    from targets.spec import TARGET_KINDS

    (tmp_path / "hil_test_board_driver.py").write_text(
        textwrap.dedent(
            """\
            from typing import ClassVar, Literal

            from targets.base import Driver, Placement
            from targets.spec import Target, register_target


            class ZephyrTarget(Target):
                kind: ClassVar[str] = "zephyr"
                stack: Literal["zephyr"] = "zephyr"
                board: str

                def driver(self, place: Placement) -> Driver:
                    return Driver(place)


            register_target(ZephyrTarget)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        good = lab(
            """\
            version: 1
            imports: [hil_test_board_driver]
            targets:
              - {name: z, stack: zephyr, board: nrf52840dk, ipv6: "2001:db8::2/64"}
            """
        )
        assert type(good.target("z")).__name__ == "ZephyrTarget"  # type: ignore[attr-defined]
        with pytest.raises(LabError) as exc:
            lab(
                """\
                version: 1
                imports: [hil_test_board_driver]
                targets:
                  - {name: z, stack: zephyr, bord: nrf52840dk, ipv6: "2001:db8::2/64"}
                """
            )
        assert "unknown key 'bord'; did you mean 'board'?" in str(exc.value)
        kinds = json_schema()["properties"]["targets"]["items"]["discriminator"]["mapping"]
        assert "zephyr" in kinds
    finally:
        TARGET_KINDS.pop("zephyr", None)
