"""Bad command lines get messages that say what to type instead."""

from __future__ import annotations

import pytest

from harness.cli import main
from stack.services import ServiceSpec, parse_services


def test_services_parse() -> None:
    assert parse_services("udp-echo:7, echo:7,discard:9,chargen:19:1000") == [
        ServiceSpec("udp-echo", 7),
        ServiceSpec("echo", 7),
        ServiceSpec("discard", 9),
        ServiceSpec("chargen", 19, 1000),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ftp:21", "unknown service 'ftp'"),
        ("echo", "needs a port 1-65535, e.g. echo:7"),
        ("echo:0", "needs a port"),
        ("echo:7:5", "only chargen takes a third field"),
        ("chargen:19:1:2", "too many fields"),
    ],
)
def test_services_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_services(text)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["stack", "serve", "--tap", "t0", "--ipv4", "10.0.0.300/24"], "is not ADDRESS/PREFIX"),
        (["stack", "serve", "--tap", "t0", "--gateway", "nope"], "is not an IP address"),
        (["stack", "serve", "--tap", "t0", "--mac", "02:00"], "six hex octets"),
        (["stack", "serve", "--tap", "t0", "--iface", "eth0"], "not allowed with argument"),
        (["stack", "serve", "--tap", "t0", "--services", "ftp:21"], "unknown service"),
    ],
)
def test_serve_argument_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_serve_bad_tcp_override(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["stack", "serve", "--tap", "t0", "--services", "echo:7", "--tcp", "nagel=off"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown TCP setting 'nagel'" in err and "nagle" in err  # names the valid keys


def test_serve_bad_tcp_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stack", "serve", "--tap", "t0", "--tcp", "nagle=maybe"]) == 2
    assert "takes on/off" in capsys.readouterr().err


def test_serve_unknown_profile(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["stack", "serve", "--tap", "t0", "--profile", "freertos"])
    assert "invalid choice" in capsys.readouterr().err
