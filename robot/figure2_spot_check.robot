*** Settings ***
Documentation       A few Figure 2 cells per stack, as the shipped lab configures the targets:
...                 Linux with its default sysctls, the local stack with the ``full`` profile,
...                 lwIP 2.1.3 with lwIP's defaults (no window scaling, timestamps or SACK;
...                 TCP_WND 4 * TCP_MSS; a 250 ms delayed-ACK timer). Only quick probes
...                 (P1, P8, P15, P20); ``hil run`` fills the whole figure.

Resource            tcp_hil.resource

Suite Setup         Lab Is Up


*** Test Cases ***
Win size (MSS)
    [Template]    Feature Should Be Within
    linux    rcv_window_mss    20    64    family=ipv4
    local    rcv_window_mss    20    64    family=ipv4
    lwip    rcv_window_mss    4    4    family=ipv4

Win. Scale
    [Template]    Feature Should Be
    linux    window_scale    True
    local    window_scale    True
    local    window_scale_shift    3
    lwip    window_scale    False

TCP timest.
    [Template]    Feature Should Be
    linux    timestamps    True
    local    timestamps    True
    lwip    timestamps    False

SACK
    [Template]    Feature Should Be
    linux    sack_permitted    True
    linux    sack_blocks    True
    local    sack_permitted    True
    local    sack_blocks    True
    lwip    sack_permitted    False
    lwip    sack_blocks    False

Del. ACKs
    [Documentation]    Every stack delays ACKs; Linux and the local stack by about 40 ms, lwIP
    ...    until its 250 ms fast timer; never more than the 500 ms of MUST-40.
    [Template]    Feature Should Be Within
    linux    delayed_ack_ms    20    250
    local    delayed_ack_ms    20    250
    lwip    delayed_ack_ms    150    500

TFO
    [Template]    Feature Should Be
    linux    tfo    False
    local    tfo    True
    lwip    tfo    False
