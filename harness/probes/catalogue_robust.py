"""Robustness probes: Nagle, SACK, out-of-order queueing, RST/SYN handling, ISN quality, connection limits, IP reassembly (P9, P15, P16, P18, P21, P22, P24, P25)."""

from __future__ import annotations
