"""The lab model: what ``lab.yaml`` may say, as pydantic models (schema version 1).

A lab file describes a bench once: its targets (stacks under test), how each is reached
(a virtual link the harness builds, or a board's NIC and console), their addresses, the
level-0 services every target offers and the level-1 agent some speak. The target models live
with their drivers (:mod:`targets.spec` and ``targets/<kind>/target.py``); target kinds are a
registry, so an out-of-tree driver adds its own kind through the file's ``imports:`` without a
change here. ``fixtures:`` is reserved for the instruments of the next phase (power, switches,
link emulators, sniffers, radios); its sections are accepted as free-form mappings today so
files written for them keep loading.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

import targets.kinds  # noqa: F401 - registers the built-in kinds
from targets.kinds import LinuxTarget, LocalTarget, LwipTarget, NativeTarget
from targets.spec import (
    TARGET_KINDS,
    Addresses,
    Agent,
    BoardLink,
    Link,
    Services,
    Strict,
    Target,
    VirtualLink,
    register_target,
)

SCHEMA_VERSION = 1

__all__ = [
    "SCHEMA_VERSION",
    "TARGET_KINDS",
    "Addresses",
    "Agent",
    "BoardLink",
    "Lab",
    "Link",
    "LinuxTarget",
    "LocalTarget",
    "LwipTarget",
    "NativeTarget",
    "Services",
    "Target",
    "VirtualLink",
    "json_schema",
    "register_target",
]


class Lab(Strict):
    version: Literal[1]
    name: str = Field("lab", pattern=r"^[A-Za-z0-9._-]+$")
    imports: list[str] = Field(default_factory=list, description="python modules to import")
    targets: list[Target] = Field(min_length=1)
    fixtures: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="reserved: power, switches, links, sniffers, radios"
    )

    def target(self, name: str) -> Target:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(f"no target {name!r}; targets: {', '.join(t.name for t in self.targets)}")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a lab file for editors (``hil lab schema``), with every registered
    target kind as one alternative of ``targets`` items, told apart by ``stack``."""
    from typing import Union

    from pydantic import create_model

    kinds = tuple(TARGET_KINDS.values())
    item: Any = kinds[0] if len(kinds) == 1 else Union[kinds]  # noqa: UP007 - built at run time
    union = Annotated[item, Field(discriminator="stack")]
    schema_model = create_model(
        "LabFile",
        __base__=Lab,
        targets=(list[union], Field(min_length=1)),
    )
    schema = schema_model.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"tcp-hil lab file, version {SCHEMA_VERSION}"
    return schema
