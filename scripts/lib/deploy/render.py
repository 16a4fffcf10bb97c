#!/usr/bin/env python3
"""Render a Helm chart offline with Helm's own engine (PyPI helm-python-sdk, which binds
Helm v4's Go library: no helm binary, no cluster).

    render.py [--chart charts/chukan] [-f values.yaml]... [--name chukan] [--namespace chukan]
              [--lint] [--notes]

Prints every rendered manifest as one multi-document YAML stream on stdout (templates in
path order, each document headed by `# Source: <template>`; hooks and `helm test` Pods
included, NOTES.txt only with --notes, on stderr). Values files merge like `helm -f`:
later files win, maps merge deeply, `null` removes a key. With --lint the chart is first
linted strictly with the same values (warnings are errors). Exit 1 on any failure, with
Helm's message (schema violations name the key).

Other checks import it: `render(chart, values, ...)`, `lint(chart, values)`,
`load_values(files)`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

# Kubernetes version the chart is linted for: the newest of the two check-deploy validates.
LINT_KUBE_VERSION = "v1.33.0"


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`helm -f a -f b`: b's keys win; maps merge; a null in b deletes the key."""
    out = dict(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_values(files: list[str | Path]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for file in files:
        loaded = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise SystemExit(f"{file}: a values file must be a mapping")
        values = merge(values, loaded)
    return values


def lint(chart: str | Path, values: dict[str, Any], namespace: str = "chukan") -> list[str]:
    """Strict lint; returns the findings that fail it (warnings and errors)."""
    report = helm.lint(
        str(chart), values, strict=True, namespace=namespace, kube_version=LINT_KUBE_VERSION
    )
    # Severity 1 is informational ("icon is recommended"); 2 warning, 3 error.
    return [
        f"{m['path']}: {m['error'].strip()}" for m in report["messages"] if m["severity"] >= 2
    ] + [e.strip() for e in report.get("errors", []) if e.strip()]


def render(
    chart: str | Path,
    values: dict[str, Any],
    name: str = "chukan",
    namespace: str = "chukan",
    notes: bool = False,
) -> tuple[str, str]:
    """(multi-document YAML of every manifest, rendered NOTES.txt)."""
    with helm.Chart.load(str(chart)) as loaded:
        manifests = loaded.render(
            values, name=name, namespace=namespace, is_install=True, revision=1
        )
    docs, notes_text = [], ""
    for path in sorted(manifests):
        body = manifests[path]
        if path.endswith("NOTES.txt"):
            notes_text = body
            continue
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in body.split("\n---"):
            if doc.strip() and any(
                line.strip() and not line.lstrip().startswith("#") for line in doc.splitlines()
            ):
                docs.append(f"# Source: {path}\n{doc.strip(chr(10))}\n")
    return "---\n".join(docs), notes_text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chart", default="charts/chukan")
    parser.add_argument("-f", "--values", action="append", default=[])
    parser.add_argument("--name", default="chukan")
    parser.add_argument("--namespace", default="chukan")
    parser.add_argument("--lint", action="store_true", help="lint strictly first")
    parser.add_argument("--notes", action="store_true", help="print NOTES.txt on stderr")
    args = parser.parse_args()
    values = load_values(args.values)
    try:
        if args.lint:
            findings = lint(args.chart, values, args.namespace)
            if findings:
                print("lint failed:\n  " + "\n  ".join(findings), file=sys.stderr)
                return 1
        stream, notes = render(args.chart, values, args.name, args.namespace)
    except helm.HelmError as e:
        print(f"render failed: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(stream)
    if args.notes:
        sys.stderr.write(notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
