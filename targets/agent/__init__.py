"""The agent protocol (docs/agent.md): the Python client and the conformance suite."""
