"""Flow probes: windows, initial window, slow start, fast retransmit and recovery, MSS use, silly-window avoidance (P1 MSS use, P2-P6, P10)."""

from __future__ import annotations
