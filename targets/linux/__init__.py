"""The Linux kernel's stack as a target: a namespace with ``sysctl:`` overrides, the level-0
services and the agent running inside it (:mod:`targets.linux.agent`)."""
