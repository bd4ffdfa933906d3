"""TCP behaviour probes: the timeline DSL, tolerance models, wires, the probe engine and catalogue.

The tester plays the peer from the raw side: it crafts segments, injects them on a wire and
checks what the target sends back, with times taken from the wire itself.
"""
