"""TCP for the reference stack (in progress): sequence space, RTO estimation, congestion control.

Each piece is a sans-IO building block tested on its own; the socket state machine that composes
them, with profiles and peer hooks, is the next step.
"""
