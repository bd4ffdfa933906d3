*** Settings ***
Documentation       Interoperability of the kernel's TCP (the tester) with every target's
...                 services: 1 MiB through echo intact over IPv4 and IPv6, 1 MiB into discard,
...                 64 KiB out of chargen.

Resource            tcp_hil.resource

Suite Setup         Lab Is Up


*** Test Cases ***
Echo integrity of 1 MiB over IPv4
    [Template]    Echo Integrity
    FOR    ${target}    IN    @{LAB TARGETS}
        ${target}    ipv4    1 MiB
    END

Echo integrity of 1 MiB over IPv6
    [Template]    Echo Integrity
    FOR    ${target}    IN    @{LAB TARGETS}
        ${target}    ipv6    1 MiB
    END

Discard takes 1 MiB
    [Template]    Discard Takes
    FOR    ${target}    IN    @{LAB TARGETS}
        ${target}    ipv4    1 MiB
        ${target}    ipv6    1 MiB
    END

Chargen gives 64 KiB
    [Template]    Chargen Gives
    FOR    ${target}    IN    @{LAB TARGETS}
        ${target}    ipv4
        ${target}    ipv6
    END
