"""The probe catalogue: importing this module registers every probe with the engine."""

from harness.probes import catalogue_handshake  # noqa: F401 - registers P1, P19, P20, P23
from harness.probes.engine import PROBES

__all__ = ["PROBES"]
