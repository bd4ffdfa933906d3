"""Link types: every frame the stack handles is tagged with one.

The values are the pcap/pcapng LINKTYPE numbers, so a device's link type goes straight into a
capture file's interface description. The 802.15.4 types are declared now so the radio work
slots in without touching devices, pcap writers or the interface dispatch.
"""

from __future__ import annotations

from enum import IntEnum


class LinkType(IntEnum):
    ETHERNET = 1
    RAW_IP = 101  # TUN: the frame starts with the IPv4/IPv6 header
    IEEE802154_WITH_FCS = 195
    IEEE802154_NOFCS = 230
    IEEE802154_TAP = 283


class EtherType(IntEnum):
    IPV4 = 0x0800
    ARP = 0x0806
    VLAN = 0x8100
    QINQ = 0x88A8
    IPV6 = 0x86DD


class IpProto(IntEnum):
    HOPOPT = 0
    ICMP = 1
    TCP = 6
    UDP = 17
    IPV6_ROUTE = 43
    IPV6_FRAG = 44
    ICMPV6 = 58
    IPV6_NONXT = 59
    IPV6_OPTS = 60
