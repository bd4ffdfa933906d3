*** Settings ***
Documentation       A quick conformance smoke test of every target: the handshake options
...                 (probe P1), an echo over IPv4 and IPv6, and a feature within its range.

Resource            tcp_hil.resource

Suite Setup         Lab Is Up


*** Test Cases ***
Handshake probe runs on every target
    FOR    ${target}    IN    @{LAB TARGETS}
        Run Probe    ${target}    P1
    END

MSS advertised in the SYN-ACK
    [Documentation]    Values as the shipped lab configures the targets: the Linux and local
    ...    stacks derive the MSS from the 1500-byte MTU, lwIP uses its default TCP_MSS 536.
    [Template]    Feature Should Be
    linux    mss_advertised    1460    family=ipv4
    linux    mss_advertised    1440    family=ipv6
    local    mss_advertised    1460    family=ipv4
    local    mss_advertised    1440    family=ipv6
    lwip    mss_advertised    536    family=ipv4
    lwip    mss_advertised    536    family=ipv6

Default TTL of the target's packets
    [Template]    Feature Should Be
    linux    ttl_default    64
    local    ttl_default    64
    lwip    ttl_default    255

Echo over IPv4 and IPv6
    [Template]    Echo Round Trip
    FOR    ${target}    IN    @{LAB TARGETS}
        ${target}    ipv4
        ${target}    ipv6
    END

MSS within the range RFC 9293 allows on this link
    [Documentation]    At least the 536-byte default (MUST-15), at most what a 1500-byte MTU
    ...    carries.
    [Template]    Feature Should Be Within
    FOR    ${target}    IN    @{LAB TARGETS}
        ${target}    mss_advertised    536    1460
    END
