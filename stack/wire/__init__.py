"""Zero-copy packet codecs.

Every header has a typed representation (a slotted dataclass) with:

* ``parse(data: memoryview, ...) -> (Repr, payload: memoryview)`` -- validates strictly and
  raises only :class:`~stack.wire.errors.Malformed`; the payload is a slice of the input
  (no copy);
* ``header_len`` -- bytes the header occupies when emitted;
* ``emit(buf, offset, ...)`` -- writes the header into a pre-sized ``bytearray`` at
  ``offset``. Checksummed headers (ICMP, UDP, TCP) compute their checksum over the payload that
  must already sit right after the header in ``buf``; so frames are built inside out into one
  buffer with no concatenation.
"""

from stack.wire.errors import Malformed
from stack.wire.link import EtherType, IpProto, LinkType

__all__ = ["EtherType", "IpProto", "LinkType", "Malformed"]
