"""The lwIP target: built from Debian's source package, then run on a TAP against Linux.

The build tests need gcc, apt and network access to the Debian archive (CI has all three, as
root, and installs dpkg-dev on demand); the service tests also need root for the namespace.
What is asserted comes from lwIP's documented defaults (``opt.h``) and the RFCs of the
services, not from what the program happens to print.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from harness.localstack import LocalStack, start
from stack.services import CHARGEN
from targets.lwip.build import (
    PACKAGE_VERSION,
    REQUIRED,
    Build,
    BuildError,
    cache_root,
    ensure_built,
    known_options,
)
from tests.integration.conftest import Netns

pytestmark = pytest.mark.slow

MAC = "02:00:00:00:00:03"
V4 = "10.77.0.3"
V6 = "2001:db8:77::3"
CHARGEN_BYTES = 100_000  # not a multiple of the 7030-byte pattern: the tail must be right too


def _link_local(mac: str) -> str:
    """RFC 4291 appendix A: modified EUI-64 (U/L bit flipped, ff:fe in the middle)."""
    b = bytes.fromhex(mac.replace(":", ""))
    eui = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:]
    groups = [f"{int.from_bytes(eui[i : i + 2], 'big'):x}" for i in range(0, 8, 2)]
    return "fe80::" + ":".join(groups).lstrip("0:")


# ---- building ----


def test_build_caches_and_applies_only_the_given_options(
    lwip_default: Build, tmp_path: Path
) -> None:
    # A private build cache sharing the already fetched source: the first build must compile.
    (tmp_path / "src").symlink_to(cache_root() / "src", target_is_directory=True)
    first = ensure_built({}, cache=tmp_path)
    assert not first.cached
    assert first.binary.is_file() and os.access(first.binary, os.X_OK)
    opts = (first.directory / "lwipopts.h").read_text()
    for name, value in REQUIRED.items():
        assert f"#define {name}" in opts and f" {value}\n" in opts.split(f"#define {name}")[1][:40]
    # Defaults come from lwIP's opt.h, so the generated file must not set them.
    for name in ("TCP_MSS", "TCP_WND", "TCP_SND_BUF", "MEM_SIZE", "PBUF_POOL_SIZE"):
        assert f"#define {name} " not in opts

    mtime = first.binary.stat().st_mtime_ns
    again = ensure_built({}, cache=tmp_path)
    assert again.cached and again.binary == first.binary
    assert again.binary.stat().st_mtime_ns == mtime

    tuned = ensure_built({"TCP_MSS": 1460, "TCP_WND": "(4 * TCP_MSS)"}, cache=tmp_path)
    assert not tuned.cached and tuned.directory != first.directory
    text = (tuned.directory / "lwipopts.h").read_text()
    assert "#define TCP_MSS                      1460" in text
    assert "(4 * TCP_MSS)" in text


def test_build_rejects_what_lwip_would_not_take(lwip_default: Build, tmp_path: Path) -> None:
    (tmp_path / "src").symlink_to(cache_root() / "src", target_is_directory=True)
    # Options opt.h defines in groups under one guard (TCP_RCV_SCALE) are options too.
    tree = cache_root() / "src" / f"lwip_{PACKAGE_VERSION}"
    tuning = {"TCP_MSS", "TCP_WND", "TCP_SND_BUF", "LWIP_WND_SCALE", "TCP_RCV_SCALE"}
    assert tuning | {"LWIP_TCP_SACK_OUT", "MEM_SIZE", "PBUF_POOL_SIZE"} <= known_options(tree)
    with pytest.raises(ValueError, match="TCP_WINDOW"):
        ensure_built({"TCP_WINDOW": 8192}, cache=tmp_path)
    with pytest.raises(ValueError, match="NO_SYS"):
        ensure_built({"NO_SYS": 0}, cache=tmp_path)
    with pytest.raises(ValueError, match="C expression"):
        ensure_built({"TCP_MSS": "1460\n#include <x>"}, cache=tmp_path)
    # lwIP's own sanity check (init.c): a 64 KB send buffer needs more than the default 16
    # segment descriptors. The build must fail and say so, not produce a broken binary.
    with pytest.raises(BuildError, match="MEMP_NUM_TCP_SEG"):
        ensure_built({"TCP_MSS": 1460, "TCP_SND_BUF": 65535}, cache=tmp_path)


# ---- running against Linux ----


def _start(ns: Netns, binary: Path, *extra: str) -> LocalStack:
    argv = ["ip", "netns", "exec", ns.name, str(binary), "--tap", ns.tap, "--mac", MAC]
    argv += ["--ipv4", f"{V4}/24", "--ipv6", f"{V6}/64", *extra]
    target = start(argv)
    ns.procs.append(target.proc)
    return target


SERVICES_CLIENT = r"""
import hashlib, os, socket, sys, threading
addr, n_chargen = sys.argv[1], int(sys.argv[2])
def conn(port):
    return socket.create_connection((addr, port), timeout=10)
# echo: 300 kB both ways at once; the window, not data loss, must slow the sender down.
s = conn(7)
payload = os.urandom(300_000)
got = bytearray()
def reader():
    while chunk := s.recv(65536):
        got.extend(chunk)
t = threading.Thread(target=reader)
t.start()
s.sendall(payload)
s.shutdown(socket.SHUT_WR)
t.join(20)
assert bytes(got) == payload, ("echo", len(got))
# discard: everything accepted, then the server closes after our FIN (recv -> b"").
s = conn(9)
s.sendall(b"\x5a" * 1_000_000)
s.shutdown(socket.SHUT_WR)
assert s.recv(100) == b"", "discard sent data or no FIN"
# chargen with a byte count: exactly n bytes of the RFC 864 pattern, then FIN.
s = conn(19)
data = bytearray()
while chunk := s.recv(65536):
    data.extend(chunk)
assert len(data) == n_chargen, len(data)
print("ok", hashlib.sha256(data).hexdigest())
"""


@pytest.mark.root
def test_services_over_ipv4_ipv6_and_link_local(netns: Netns, lwip_default: Build) -> None:
    target = _start(netns, lwip_default.binary, "--chargen-bytes", str(CHARGEN_BYTES))
    ll = _link_local(MAC)
    assert V4 in target.ready_line and V6 in target.ready_line and ll in target.ready_line
    # RFC 864's pattern: 95 lines of 72 printable characters + CR LF, each line one on.
    assert len(CHARGEN) == 95 * 74 and CHARGEN[:2] == b" !" and CHARGEN[74:76] == b"!\x22"
    expected = (CHARGEN * (CHARGEN_BYTES // len(CHARGEN) + 1))[:CHARGEN_BYTES]
    for addr in (V4, V6, f"{ll}%{netns.tap}"):
        out = netns.python(
            SERVICES_CLIENT.replace("sys.argv[1]", repr(addr)).replace(
                "int(sys.argv[2])", str(CHARGEN_BYTES)
            ),
            timeout=60,
        )
        assert out.split() == ["ok", hashlib.sha256(expected).hexdigest()], (addr, out)
    summary = target.stop()
    assert target.proc.returncode == 0, summary
    assert "frames in" in summary and "connections 9" in summary, summary


SYNACK_CLIENT = r"""
import socket, struct
tap, addr, port = TAP, ADDR, 9
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
cap.bind((tap, 0))
cap.settimeout(5)
s = socket.create_connection((addr, port), timeout=5)
while True:
    frame = cap.recv(2048)
    if struct.unpack_from("!H", frame, 12)[0] != 0x0800 or frame[23] != 6:
        continue
    tcp = 14 + (frame[14] & 15) * 4
    if frame[tcp + 13] & 0x12 != 0x12:
        continue
    window = struct.unpack_from("!H", frame, tcp + 14)[0]
    opts = frame[tcp + 20 : tcp + (frame[tcp + 12] >> 4) * 4]
    mss, i, kinds = None, 0, []
    while i < len(opts) and opts[i] != 0:
        if opts[i] == 1:
            i += 1
            continue
        kinds.append(opts[i])
        if opts[i] == 2:
            mss = struct.unpack_from("!H", opts, i + 2)[0]
        i += opts[i + 1]
    print(window, mss, sorted(kinds))
    break
s.close()
"""


def _synack(ns: Netns) -> tuple[int, int, list[int]]:
    code = SYNACK_CLIENT.replace("TAP", repr(ns.tap)).replace("ADDR", repr(V4))
    window, mss, kinds = ns.python(code).split(maxsplit=2)
    return (
        int(window),
        int(mss),
        [int(k) for k in kinds.strip().strip("[]").split(",") if k.strip()],
    )


@pytest.mark.root
def test_syn_ack_shows_lwip_defaults_and_overrides(netns: Netns, lwip_default: Build) -> None:
    target = _start(netns, lwip_default.binary, "--no-dad")
    # lwIP 2.1 opt.h: TCP_MSS 536, TCP_WND 4 * TCP_MSS; no window scaling, timestamps or SACK.
    assert _synack(netns) == (4 * 536, 536, [2])
    target.stop()

    tuned = ensure_built({"TCP_MSS": 1460, "TCP_WND": 8 * 1460, "PBUF_POOL_SIZE": 24})
    target = _start(netns, tuned.binary, "--no-dad")
    assert _synack(netns) == (8 * 1460, 1460, [2])
    target.stop()
    assert target.proc.returncode == 0
