#!/usr/bin/env python3
"""Validate Istio resources against the CustomResourceDefinitions in this
directory, as the API server does with `kubectl apply --validate=strict`:
types, enums, required fields, bounds, and unknown fields (an object with
`properties` and without `x-kubernetes-preserve-unknown-fields` accepts no
other keys). kubernetes-validate knows only built-in kinds, so CI checks
our CRD instances with this.

usage: validate-crd-instances.py CRDS.yaml FILE.yaml...
Documents of other kinds are skipped and listed; exit 1 on any error.
"""
import sys

import yaml


def check(value, schema, path, errors):
    t = schema.get("type")
    if value is None:
        if not schema.get("nullable"):
            errors.append(f"{path}: null is not allowed")
        return
    if t == "object":
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for req in schema.get("required", []):
            if req not in value:
                errors.append(f"{path}: missing required field {req!r}")
        for k, v in value.items():
            if props and k in props:
                check(v, props[k], f"{path}.{k}", errors)
            elif isinstance(extra, dict):
                check(v, extra, f"{path}.{k}", errors)
            elif props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{path}: unknown field {k!r}")
    elif t == "array":
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, v in enumerate(value):
            check(v, schema.get("items", {}), f"{path}[{i}]", errors)
    elif t == "string":
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {value!r}")
        elif "enum" in schema and value not in schema["enum"]:
            errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    elif t == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}: expected an integer, got {value!r}")
            return
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} > {schema['maximum']}")
    elif t == "boolean" and not isinstance(value, bool):
        errors.append(f"{path}: expected a boolean, got {value!r}")


def documents(path):
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if isinstance(doc, dict) and doc.get("kind", "").endswith("List") and "items" in doc:
                yield from doc["items"]
            elif doc is not None:
                yield doc


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    schemas = {}
    for crd in documents(argv[1]):
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        for v in spec["versions"]:
            schemas[(f"{spec['group']}/{v['name']}", spec["names"]["kind"])] = v["schema"]["openAPIV3Schema"]
    failed = checked = 0
    skipped = set()
    for path in argv[2:]:
        for doc in documents(path):
            key = (doc.get("apiVersion"), doc.get("kind"))
            name = doc.get("metadata", {}).get("name", "?")
            if key not in schemas:
                skipped.add(f"{key[0]} {key[1]}")
                continue
            errors = []
            check(doc, schemas[key], doc["kind"], errors)
            checked += 1
            if errors:
                failed += 1
                print(f"FAIL {path}: {doc['kind']}/{name}:")
                for e in errors:
                    print(f"  {e}")
            else:
                print(f"ok   {path}: {doc['kind']}/{name} ({key[0]})")
    for s in sorted(skipped):
        print(f"skipped (no CRD here): {s}")
    print(f"{checked} resources checked, {failed} failed")
    return 1 if failed or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
