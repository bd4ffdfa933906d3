"""The built-in target kinds; importing this module registers them."""

from targets.linux.target import LinuxTarget
from targets.local.target import LocalTarget
from targets.lwip.target import LwipTarget
from targets.native.target import NativeTarget

__all__ = ["LinuxTarget", "LocalTarget", "LwipTarget", "NativeTarget"]
