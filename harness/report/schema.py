"""The published JSON Schema of ``report.json`` (``tcp-hil/report/1``), hand-written.

Hand-written rather than generated so the schema is the contract, reviewed as such: a change
to the report that breaks it needs a new schema id. docs/report.md explains the fields;
``python -m harness.report.schema`` prints the schema.
"""

from __future__ import annotations

import json
from typing import Any

from harness.report.model import SCHEMA_ID

__all__ = ["schema"]

VERDICTS = ["conforms", "deviates", "not-applicable", "inconclusive"]
REQ_STATUS = ["conforms", "deviates", "tested", "not tested", "not observable"]
PROBE_STATUS = ["conforms", "deviates", "error", "inconclusive", "not-applicable", "missing"]


def _nullable(t: str) -> dict[str, Any]:
    return {"type": [t, "null"]}


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) every ``report.json`` validates against."""
    value = {"type": ["number", "boolean", "string", "null"]}
    confidence = {
        "type": "object",
        "required": ["trials", "interval", "level"],
        "properties": {
            "trials": {"type": "integer", "minimum": 0},
            "interval": {
                "oneOf": [
                    {"type": "null"},
                    {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
                ]
            },
            "level": _nullable("number"),
        },
        "additionalProperties": False,
    }
    evidence_ref = {
        "oneOf": [
            {"type": "null"},
            {
                "type": "object",
                "required": ["id", "pcap", "t_start", "t_end", "frames", "note"],
                "properties": {
                    "id": {
                        "type": ["string", "null"],
                        "description": "the evidence view (targets.<name>.evidence[].id)",
                    },
                    "pcap": {"type": "string", "description": "relative to the bundle"},
                    "t_start": {"type": "number"},
                    "t_end": {"type": "number"},
                    "frames": {"type": "array", "items": {"type": "integer", "minimum": 1}},
                    "note": {"type": "string"},
                },
                "additionalProperties": False,
            },
        ]
    }
    observed: dict[str, Any] = {
        "value": value,
        "verdict": {"enum": VERDICTS},
        "confidence": {"$ref": "#/$defs/confidence"},
        "evidence": {"$ref": "#/$defs/evidence_ref"},
        "probe": {"type": "string"},
        "detail": {"type": "string"},
    }
    observation = {
        "type": "object",
        "required": list(observed),
        "properties": observed,
        "additionalProperties": False,
    }
    feature = {
        "type": "object",
        "required": [
            "text",
            "unit",
            "requirements",
            "value",
            "verdict",
            "confidence",
            "evidence",
            "probe",
            "detail",
        ],
        "properties": {
            **observed,
            "text": {"type": "string"},
            "unit": {"type": "string"},
            "requirements": {"type": "array", "items": {"type": "string"}},
            "families": {
                "type": "object",
                "propertyNames": {"enum": ["ipv4", "ipv6", "stack"]},
                "additionalProperties": {"$ref": "#/$defs/observation"},
                "minProperties": 1,
            },
        },
        "additionalProperties": False,
    }
    evidence_group = {
        "type": "object",
        "required": [
            "id",
            "probe",
            "pcap",
            "t_start",
            "t_end",
            "frames",
            "note",
            "keys",
            "slice",
            "slice_frames",
        ],
        "properties": {
            "id": {"type": "string", "pattern": "^.+-.+-[0-9]+$"},
            "probe": {"type": "string"},
            "pcap": {"type": "string"},
            "t_start": {"type": "number"},
            "t_end": {"type": "number"},
            "frames": {"type": "array", "items": {"type": "integer", "minimum": 1}},
            "note": {"type": "string"},
            "keys": {"type": "array", "items": {"type": "string"}},
            "slice": {"type": ["string", "null"], "pattern": "^pcaps/slices/.+\\.pcapng$"},
            "slice_frames": {"type": "integer", "minimum": 0},
        },
        "additionalProperties": False,
    }
    probe = {
        "type": "object",
        "required": ["title", "ran", "seconds", "error", "status", "keys", "verdicts"],
        "properties": {
            "title": {"type": "string"},
            "ran": {"type": "boolean"},
            "seconds": _nullable("number"),
            "error": _nullable("string"),
            "status": {"enum": PROBE_STATUS},
            "keys": {"type": "array", "items": {"type": "string"}},
            "verdicts": {
                "type": "object",
                "propertyNames": {"enum": VERDICTS},
                "additionalProperties": {"type": "integer", "minimum": 0},
            },
        },
        "additionalProperties": False,
    }
    target = {
        "type": "object",
        "required": ["stack", "build", "probes", "features", "evidence"],
        "properties": {
            "stack": {"type": "string"},
            "build": {
                "type": "object",
                "description": "<target>/build.json as the driver wrote it",
            },
            "probes": {"type": "object", "additionalProperties": {"$ref": "#/$defs/probe"}},
            "features": {"type": "object", "additionalProperties": {"$ref": "#/$defs/feature"}},
            "evidence": {"type": "array", "items": {"$ref": "#/$defs/evidence_group"}},
        },
        "additionalProperties": False,
    }
    cell = {
        "type": "object",
        "required": ["measured", "capability", "confidence", "keys", "verdicts"],
        "properties": {
            "measured": {"type": "string"},
            "capability": {"type": "string"},
            "confidence": {"type": "string"},
            "keys": {"type": "array", "items": {"type": "string"}},
            "verdicts": {"type": "array", "items": {"enum": VERDICTS}},
        },
        "additionalProperties": False,
    }
    requirement = {
        "type": "object",
        "required": ["level", "categories", "features", "keys", "status", "targets"],
        "properties": {
            "level": {"type": "string"},
            "categories": {"type": "array", "items": {"type": "string"}},
            "features": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "keys": {"type": "array", "items": {"type": "string"}},
            "status": {"enum": REQ_STATUS},
            "targets": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["status", "keys"],
                    "properties": {
                        "status": {"enum": REQ_STATUS},
                        "keys": {"type": "object", "additionalProperties": {"enum": VERDICTS}},
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    }
    run = {
        "type": "object",
        "required": [
            "start",
            "end",
            "complete",
            "missing",
            "host",
            "tool_version",
            "lab_file",
            "lab_sha256",
            "budget_s",
            "targets",
            "probes",
        ],
        "properties": {
            "start": _nullable("string"),
            "end": _nullable("string"),
            "complete": {"type": "boolean"},
            "missing": {
                "type": "array",
                "items": {
                    "type": "array",
                    "prefixItems": [{"type": "string"}, {"type": "string"}],
                    "minItems": 2,
                    "maxItems": 2,
                },
                "description": "[target, probe] pairs the run planned and has no result for",
            },
            "host": _nullable("string"),
            "tool_version": {"type": "string"},
            "lab_file": _nullable("string"),
            "lab_sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
            "budget_s": _nullable("number"),
            "seconds": _nullable("number"),
            "targets": {"type": "array", "items": {"type": "string"}},
            "probes": {"type": "array", "items": {"type": "string"}},
        },
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://tcp-hil.invalid/schema/report-1.json",
        "title": "tcp-hil run report",
        "description": "report.json of a tcp-hil run bundle (docs/report.md)",
        "type": "object",
        "required": ["schema", "run", "targets", "figure2", "requirements"],
        "properties": {
            "schema": {"const": SCHEMA_ID},
            "run": run,
            "rendered": {
                "type": "object",
                "properties": {"at": {"type": "string"}, "tool_version": {"type": "string"}},
            },
            "targets": {"type": "object", "additionalProperties": {"$ref": "#/$defs/target"}},
            "figure2": {
                "type": "object",
                "description": "target -> Figure 2 row -> cell (the same as figure2.json)",
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": {"$ref": "#/$defs/cell"},
                },
            },
            "requirements": {
                "type": "object",
                "propertyNames": {"pattern": "^(MUST|SHLD|MAY|REC)-[0-9]+$"},
                "additionalProperties": {"$ref": "#/$defs/requirement"},
            },
        },
        "additionalProperties": False,
        "$defs": {
            "confidence": confidence,
            "evidence_ref": evidence_ref,
            "observation": observation,
            "feature": feature,
            "evidence_group": evidence_group,
            "probe": probe,
            "target": target,
            "cell": cell,
            "requirement": requirement,
        },
    }


if __name__ == "__main__":
    print(json.dumps(schema(), indent=2))
