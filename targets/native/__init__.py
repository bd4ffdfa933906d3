"""Bring your own binary: any stack built for this host, started from a lab-file argv template."""
