"""The sans-IO interface layer: link, ARP/NDP, IP, fragmentation, ICMP, UDP."""

from stack.iface.interface import Interface, InterfaceConfig, Ipv4Address, Ipv6Address, UdpSocket
from stack.iface.neighbor import NeighborConfig
from stack.iface.reassembly import ReassemblyConfig

__all__ = [
    "Interface",
    "InterfaceConfig",
    "Ipv4Address",
    "Ipv6Address",
    "NeighborConfig",
    "ReassemblyConfig",
    "UdpSocket",
]
