*** Settings ***
Documentation       tcp-hil suites against a lab's targets (by default the shipped virtual lab,
...                 ``lab.yaml``: targets linux, local and lwip).
...
...                 The lab file comes from ``${LAB}`` (default ``${CURDIR}/../lab.yaml``, set in
...                 tcp_hil.resource): ``robot --variable LAB:/path/to/lab.yaml robot/``.
...                 The lab comes up once for all suites and goes down at the end, also when a
...                 suite fails or the run is interrupted. Needs root.

Resource            tcp_hil.resource

Suite Setup         Lab Is Up
Suite Teardown      Bring Lab Down
