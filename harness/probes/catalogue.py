"""The probe catalogue: importing this module registers every probe with the engine."""

from harness.probes import (  # noqa: F401 - importing registers the probes
    catalogue_flow,
    catalogue_handshake,
    catalogue_robust,
    catalogue_timers,
)
from harness.probes.engine import PROBES

__all__ = ["PROBES"]
