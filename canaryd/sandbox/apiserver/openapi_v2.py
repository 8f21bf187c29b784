"""`/openapi/v2`: the CRD schemas as a Swagger 2.0 document, in JSON or in the protobuf
encoding client-go asks for (gnostic's `openapi.v2.Document`), so `kubectl explain
--output plaintext-openapiv2` works as `kubectl explain` does with `/openapi/v3`.

Only what a schema document needs is encoded (no paths): kubectl then keeps choosing patch
types as it does without the document. The encoder is the few protobuf wire rules needed
(varints, length-delimited fields, doubles), with gnostic's field numbers.
"""

from __future__ import annotations

import struct
from typing import Any

import yaml

from canaryd.sandbox.apiserver import discovery
from canaryd.sandbox.apiserver.errors import Obj
from canaryd.sandbox.apiserver.resources import Registry

PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
_REF = "#/definitions/"


def document(registry: Registry) -> Obj:
    definitions: Obj = {}
    for group_name, versions in registry.groups().items():
        for version in versions:
            definitions.update(discovery.schemas(registry, group_name, version, _REF))
    return {"swagger": "2.0",
            "info": {"title": "Kubernetes", "version": discovery.GIT_VERSION},
            "paths": {}, "definitions": definitions}


# ----------------------------------------------------------------------------- protobuf


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1  # negative int64s as two's complement, as protobuf does
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _str(field: int, text: str) -> bytes:
    return _bytes(field, text.encode())


def _int(field: int, n: int) -> bytes:
    return _key(field, 0) + _varint(int(n))


def _double(field: int, x: float) -> bytes:
    return _key(field, 1) + struct.pack("<d", float(x))


def _any(field: int, value: Any) -> bytes:
    """gnostic's Any: the value as YAML (field 2)."""
    return _bytes(field, _str(2, yaml.safe_dump(value, default_flow_style=False)))


_STRINGS = {"$ref": 1, "format": 2, "title": 3, "description": 4, "pattern": 13}
_DOUBLES = {"multipleOf": 6, "maximum": 7, "minimum": 9}
_INTS = {"maxLength": 11, "minLength": 12, "maxItems": 14, "minItems": 15,
         "maxProperties": 17, "minProperties": 18}
_BOOLS = {"exclusiveMaximum": 8, "exclusiveMinimum": 10, "uniqueItems": 16, "readOnly": 27}


def schema(node: Obj) -> bytes:
    """One `openapi.v2.Schema`. Keys Swagger 2.0 has no field for (anyOf, oneOf, nullable)
    are left out, as kube-apiserver leaves them out of its v2 document."""
    out = bytearray()
    for key, value in node.items():
        if key in _STRINGS:
            out += _str(_STRINGS[key], str(value))
        elif key in _DOUBLES and not isinstance(value, bool):
            out += _double(_DOUBLES[key], value)
        elif key in _INTS:
            out += _int(_INTS[key], value)
        elif key in _BOOLS and isinstance(value, bool):
            out += _int(_BOOLS[key], int(value))
        elif key == "default":
            out += _any(5, value)
        elif key == "required":
            for name in value:
                out += _str(19, name)
        elif key == "enum":
            for item in value:
                out += _any(20, item)
        elif key == "additionalProperties":
            item = _int(2, int(value)) if isinstance(value, bool) else _bytes(1, schema(value))
            out += _bytes(21, item)
        elif key == "type":
            types = value if isinstance(value, list) else [value]
            out += _bytes(22, b"".join(_str(1, t) for t in types))
        elif key == "items" and isinstance(value, dict):
            out += _bytes(23, _bytes(1, schema(value)))
        elif key == "allOf":
            for sub in value:
                out += _bytes(24, schema(sub))
        elif key == "properties":
            named = b"".join(_bytes(1, _str(1, name) + _bytes(2, schema(sub)))
                             for name, sub in value.items())
            out += _bytes(25, named)
        elif key.startswith("x-"):
            out += _bytes(31, _str(1, key) + _any(2, value))
    return bytes(out)


def encode(doc: Obj) -> bytes:
    """An `openapi.v2.Document` with swagger, info, paths (empty) and definitions."""
    info = _str(1, doc["info"]["title"]) + _str(2, doc["info"]["version"])
    named = b"".join(_bytes(1, _str(1, name) + _bytes(2, schema(body)))
                     for name, body in doc["definitions"].items())
    return _str(1, doc["swagger"]) + _bytes(2, info) + _bytes(8, b"") + _bytes(9, named)
