"""Test-wide settings.

Hypothesis: no per-example deadline (scapy-driven cross-checks are slow on a loaded 2-core CI
machine, and a deadline there tests the machine, not the code); under CI the examples are
derandomized so a red run is reproducible from the commit alone.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

pytest_plugins = ["pytester"]  # the tcp-hil pytest plugin is tested by running pytest
