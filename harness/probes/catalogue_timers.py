"""Timer probes: retransmission timeouts and SYN give-up, delayed ACK, zero-window probing, keep-alive, TIME-WAIT (P7, P8, P11, P12, P17)."""

from __future__ import annotations
