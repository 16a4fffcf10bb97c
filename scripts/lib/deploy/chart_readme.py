#!/usr/bin/env python3
"""The values table of charts/chukan/README.md, generated from values.schema.json.

    chart_readme.py --write    rewrite the table between the README's markers
    chart_readme.py --check    exit 1 when the README's table is not what --write writes

Every value the schema allows is a row: its path, type, default (from values.yaml; "—"
when it has none) and description. The text outside the markers is written by hand.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[3] / "charts" / "chukan"
README = CHART / "README.md"
START, END = "<!-- values:start (scripts/check-deploy --write-readme) -->", "<!-- values:end -->"


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow $ref (local only), keeping the referring node's own description."""
    while "$ref" in node:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def type_of(schema: dict[str, Any], node: dict[str, Any]) -> str:
    node = resolve(schema, node)
    if "enum" in node:
        return " \\| ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    if "anyOf" in node:
        return " or ".join(type_of(schema, n) for n in node["anyOf"])
    t = node.get("type", "any")
    text = " or ".join(t) if isinstance(t, list) else t
    if text == "array" and "items" in node:
        return f"array of {type_of(schema, node['items'])}"
    if text == "object" and "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
        return "map of string"
    fmt = node.get("format")
    if fmt == "uri":
        return "URL"
    if node.get("pattern", "").startswith("^[0-9]+(ms|s|m|h)$"):
        return "duration"
    return f"{text} ({fmt})" if fmt else text


def describe(schema: dict[str, Any], node: dict[str, Any]) -> str:
    own = node.get("description", "")
    ref = resolve(schema, node)
    extra = ref.get("description", "") if ref.get("description") != own else ""
    text = " ".join(x for x in (own, extra) if x)
    return text.replace("|", "\\|").replace("\n", " ")


def default_of(defaults: Any, path: list[str]) -> str:
    node = defaults
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return "—"
        node = node[part]
    return "`" + json.dumps(node, ensure_ascii=False).replace("|", "\\|") + "`"


def rows(schema: dict[str, Any], node: dict[str, Any], defaults: Any, path: list[str]) -> list[str]:
    node_r = resolve(schema, node)
    props = node_r.get("properties")
    out = []
    if path and (not props or node_r.get("additionalProperties") is not False):
        return [f"| `{'.'.join(path)}` | {type_of(schema, node)} | {default_of(defaults, path)} | {describe(schema, node)} |"]
    if path:
        out.append(f"| `{'.'.join(path)}` | object | | {describe(schema, node)} |")
    for name, child in props.items():
        out += rows(schema, child, defaults, path + [name])
    return out


def table() -> str:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    lines = ["| Value | Type | Default | Description |", "| --- | --- | --- | --- |"]
    lines += rows(schema, schema, defaults, [])
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"{README}: the markers {START} and {END} are missing", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    wanted = f"{head}{START}\n{table()}\n{END}{tail}"
    if argv == ["--write"]:
        README.write_text(wanted, encoding="utf-8")
        return 0
    undocumented = [line.split("`")[1] for line in table().splitlines()[2:] if line.endswith("|  |")]
    if undocumented:
        print("values.schema.json: no description for " + ", ".join(undocumented), file=sys.stderr)
        return 1
    if argv == ["--check"]:
        if wanted != text:
            print(f"{README.relative_to(CHART.parents[1])} is not generated from values.schema.json", file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
