"""Ethernet II framing with an optional 802.1Q tag.

Only Ethernet II is accepted: a type/length field below 0x0600 is an IEEE 802.3 length
(LLC/SNAP follows), which no protocol the stack speaks uses, so it is ``unsupported`` rather
than guessed at. One 802.1Q tag (TPID 0x8100) is folded into ``vlan_tci`` so the layers above
dispatch on the inner type; a second tag (QinQ) or an 802.1ad outer tag (0x88A8) is left as the
``ethertype`` for the interface to drop or count. The FCS is never present (devices strip it)
and short-frame padding is left in the payload for the IP layer to trim with its own length.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Self

from stack.wire.checksum import Buffer
from stack.wire.errors import Malformed

_ETH = struct.Struct("!6s6sH")
_VLAN_ETH = struct.Struct("!6s6sHHH")
_VLAN = struct.Struct("!HH")
_TPID_8021Q = 0x8100
_MIN_ETHERTYPE = 0x0600  # below this the field is an 802.3 length (IEEE 802.3 3.2.6)


@dataclass(slots=True)
class EthernetHeader:
    dst: bytes
    src: bytes
    ethertype: int
    vlan_tci: int | None = None

    @classmethod
    def parse(cls, data: Buffer) -> tuple[Self, memoryview]:
        mv = data if isinstance(data, memoryview) else memoryview(data)
        n = len(mv)
        if n < 14:
            raise Malformed("truncated", f"ethernet frame of {n} bytes")
        dst, src, ethertype = _ETH.unpack_from(mv)
        if ethertype == _TPID_8021Q:
            # Tagged frames are the rare case, so they pay for the second unpack.
            if n < 18:
                raise Malformed("truncated", f"802.1Q frame of {n} bytes")
            tci, ethertype = _VLAN.unpack_from(mv, 14)
            if ethertype < _MIN_ETHERTYPE:
                raise Malformed("unsupported", f"802.3 length field 0x{ethertype:04x} in tag")
            return cls(dst, src, ethertype, tci), mv[18:]
        if ethertype < _MIN_ETHERTYPE:
            raise Malformed("unsupported", f"802.3 length field 0x{ethertype:04x}")
        return cls(dst, src, ethertype), mv[14:]

    @property
    def header_len(self) -> int:
        return 14 if self.vlan_tci is None else 18

    def emit(self, buf: bytearray | memoryview, offset: int = 0) -> None:
        if self.vlan_tci is None:
            _ETH.pack_into(buf, offset, self.dst, self.src, self.ethertype)
        else:
            _VLAN_ETH.pack_into(
                buf, offset, self.dst, self.src, _TPID_8021Q, self.vlan_tci, self.ethertype
            )

    def to_bytes(self, payload: Buffer = b"") -> bytes:
        """Header + payload, unpadded: padding to 60 bytes is the device's business."""
        hl = self.header_len
        buf = bytearray(hl + len(payload))
        self.emit(buf, 0)
        buf[hl:] = payload
        return bytes(buf)
