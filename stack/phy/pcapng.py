"""pcapng capture of everything a device sends and receives.

Why pcapng and not classic pcap: one file can hold several link types (Ethernet today,
802.15.4 later) through one Interface Description Block per link type; timestamps are stored in
nanoseconds (``if_tsresol = 9``), matching what devices report; each packet can carry a
direction flag and a free-text comment (a probe's or fault injector's note shows up in
Wireshark next to the frame it concerns).

The writer is written against the pcapng specification (draft-ietf-opsawg-pcapng), in
little-endian byte order. Blocks are always written whole, and the file is flushed every
``flush_every`` packets, at the end of every receive batch when used through
:class:`PcapDevice`, and on close -- so a killed test run still leaves a readable capture that
ends at (or close to) the moment it died.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import BinaryIO, Literal

from stack.phy.base import Buffer, Device, DeviceStats, device_poll_at
from stack.wire.link import LinkType

__all__ = ["PcapDevice", "PcapngWriter"]

Direction = Literal["in", "out"]

_SHB_TYPE = 0x0A0D0D0A
_IDB_TYPE = 0x00000001
_EPB_TYPE = 0x00000006
_BYTE_ORDER_MAGIC = 0x1A2B3C4D

_OPT_ENDOFOPT = 0
_OPT_COMMENT = 1
_SHB_USERAPPL = 4
_IF_NAME = 2
_IF_TSRESOL = 9
_EPB_FLAGS = 2
_EPB_INBOUND = 0b01
_EPB_OUTBOUND = 0b10

_U32 = struct.Struct("<I")
_OPT_HDR = struct.Struct("<HH")
_SHB_BODY = struct.Struct("<IHHq")
_IDB_BODY = struct.Struct("<HHI")
_EPB_BODY = struct.Struct("<IIIII")


def _option(code: int, value: bytes) -> bytes:
    pad = -len(value) % 4
    return _OPT_HDR.pack(code, len(value)) + value + b"\0" * pad


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return _U32.pack(block_type) + _U32.pack(total) + body + _U32.pack(total)


class PcapngWriter:
    """Writes a pcapng section: SHB, an IDB per link type on first use, then EPBs.

    ``dst`` is a path (opened, and closed by :meth:`close`) or a binary file object (flushed but
    left open by :meth:`close`, it belongs to the caller). ``link_type`` gets interface 0 up
    front so an empty capture is still a valid, typed file.
    """

    def __init__(
        self,
        dst: str | os.PathLike[str] | BinaryIO,
        link_type: LinkType = LinkType.ETHERNET,
        *,
        flush_every: int = 32,
        application: str = "tcp-hil",
    ) -> None:
        if flush_every < 1:
            raise ValueError("flush_every must be >= 1")
        self.flush_every = flush_every
        self.packets = 0
        self._pending = 0
        self._interfaces: dict[LinkType, int] = {}
        self._file: BinaryIO
        if isinstance(dst, str | os.PathLike):
            self._file = open(dst, "wb")  # noqa: SIM115 -- lives until close()
            self._owns_file = True
        else:
            self._file = dst
            self._owns_file = False
        self.closed = False
        opts = _option(_SHB_USERAPPL, application.encode()) + _option(_OPT_ENDOFOPT, b"")
        self._file.write(_block(_SHB_TYPE, _SHB_BODY.pack(_BYTE_ORDER_MAGIC, 1, 0, -1) + opts))
        self.interface_id(link_type)
        self.flush()

    def interface_id(self, link_type: LinkType) -> int:
        """The interface id for ``link_type``, writing its IDB the first time it is used."""
        idx = self._interfaces.get(link_type)
        if idx is None:
            idx = len(self._interfaces)
            opts = (
                _option(_IF_NAME, f"{link_type.name.lower()}{idx}".encode())
                + _option(_IF_TSRESOL, bytes([9]))
                + _option(_OPT_ENDOFOPT, b"")
            )
            # snaplen 0: no limit (frames are never truncated).
            self._file.write(_block(_IDB_TYPE, _IDB_BODY.pack(int(link_type), 0, 0) + opts))
            self._interfaces[link_type] = idx
        return idx

    def write(
        self,
        frame: Buffer,
        timestamp_ns: int,
        *,
        link_type: LinkType | None = None,
        direction: Direction | None = None,
        comment: str | None = None,
    ) -> None:
        """Append one Enhanced Packet Block (``link_type`` defaults to the constructor's)."""
        if self.closed:
            raise ValueError("pcapng writer is closed")
        iface = 0 if link_type is None else self.interface_id(link_type)
        length = len(frame)
        opts = b""
        if comment:
            opts += _option(_OPT_COMMENT, comment.encode())
        if direction is not None:
            flags = _EPB_INBOUND if direction == "in" else _EPB_OUTBOUND
            opts += _option(_EPB_FLAGS, _U32.pack(flags))
        if opts:
            opts += _option(_OPT_ENDOFOPT, b"")
        ts = max(timestamp_ns, 0)
        body = _EPB_BODY.pack(iface, (ts >> 32) & 0xFFFFFFFF, ts & 0xFFFFFFFF, length, length)
        pad = b"\0" * (-length % 4)
        self._file.write(_block(_EPB_TYPE, body + bytes(frame) + pad + opts))
        self.packets += 1
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self.closed:
            self._file.flush()
            self._pending = 0

    @property
    def dirty(self) -> bool:
        """Packets written since the last flush."""
        return self._pending > 0

    def close(self) -> None:
        if self.closed:
            return
        self.flush()
        self.closed = True
        if self._owns_file:
            self._file.close()

    def __enter__(self) -> PcapngWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PcapDevice:
    """Records every frame in and out of ``inner`` with the inner device's timestamps.

    ``comment(direction, frame)`` may return a per-packet comment. ``close()`` closes the inner
    device and, unless ``close_writer=False`` (a writer shared by several devices), the writer.
    """

    def __init__(
        self,
        inner: Device,
        writer: PcapngWriter,
        *,
        comment: Callable[[Direction, bytes], str | None] | None = None,
        close_writer: bool = True,
    ) -> None:
        self.inner = inner
        self.writer = writer
        self.link_type = inner.link_type
        self.mtu = inner.mtu
        self.stats = DeviceStats()
        self._comment = comment
        self._close_writer = close_writer

    def fileno(self) -> int:
        return self.inner.fileno()

    def poll_at(self) -> int | None:
        return device_poll_at(self.inner)

    def recv(self) -> tuple[int, bytes] | None:
        got = self.inner.recv()
        if got is None:
            # End of a receive batch: the loop is about to sleep, so put what we have on disk.
            if self.writer.dirty:
                self.writer.flush()
            return None
        ts, frame = got
        note = self._comment("in", frame) if self._comment else None
        self.writer.write(frame, ts, link_type=self.link_type, direction="in", comment=note)
        self.stats.count_in(frame)
        return got

    def send(self, frame: Buffer) -> int:
        ts = self.inner.send(frame)
        data = bytes(frame)
        note = self._comment("out", data) if self._comment else None
        self.writer.write(data, ts, link_type=self.link_type, direction="out", comment=note)
        self.stats.count_out(data)
        return ts

    def close(self) -> None:
        self.inner.close()
        if self._close_writer:
            self.writer.close()
        else:
            self.writer.flush()
