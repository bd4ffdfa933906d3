"""The oracle must be able to say no: a bad checksum and a truncated header are flagged."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from tests import tshark


def test_oracle_flags_bad_checksum_and_malformed(tmp_path: Path) -> None:
    good = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"hello"
    bad_udp = (
        Ether()
        / IP(src="10.0.0.1", dst="10.0.0.2")
        / UDP(sport=1, dport=2, chksum=0x1234)
        / b"hello"
    )
    bad_ip = Ether() / IP(src="10.0.0.1", dst="10.0.0.2", chksum=0x1111) / UDP(sport=1, dport=2)
    truncated = bytes(good)[: 14 + 10]
    path = tmp_path / "mixed.pcap"
    wrpcap(str(path), [good, bad_udp, bad_ip, Ether(truncated)])
    flagged = {int(line.split("\t")[0]) for line in tshark.problems(path)}
    assert flagged == {2, 3, 4}
