"""tcp-hil's reference TCP/IP stack.

A sans-IO stack: frames and the current time go in, frames and the next deadline come out.
Nothing under ``stack/`` reads a clock, sleeps or opens a socket except ``stack.phy``, which
holds the devices and the event loop that drive the core on real interfaces. ``stack`` imports
nothing else of tcp-hil (harness -> targets/fixtures -> stack).
"""
