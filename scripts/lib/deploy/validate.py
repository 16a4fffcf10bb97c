#!/usr/bin/env python3
"""Offline validation of Kubernetes manifests: every object of every YAML file given.

    $DEPLOY_PY scripts/lib/deploy/validate.py [--skip-checkov] PATH...

PATH is a YAML file (one or more documents), a folder (its *.yaml / *.yml files,
recursively) or `-` for standard input.
$DEPLOY_PY comes from `ensure_deploy_tools` (scripts/lib/deploy-tools.sh).

For each object:
  - a built-in kind (core, apps, batch, policy, networking.k8s.io, ...) is validated with
    kubernetes-validate in strict mode (unknown fields rejected) for two Kubernetes versions;
  - a custom resource is validated against its CRD's openAPIV3Schema, k8s/crd-schemas/
    <group>_<kind>_<version>.json, with jsonschema; unknown fields are rejected there too (the
    API server would prune them silently, or refuse them under kubectl's strict field
    validation), and metadata is checked against ObjectMeta. A custom resource whose kind has
    no schema file fails: nothing passes unchecked.
Then checkov (kubernetes framework, --skip-download: no network) runs on all the objects; its
failures count unless a skip in scripts/lib/deploy/checkov-skips.yaml (each with a reason)
covers them.

k8s/crd-schemas/ is a byte-for-byte copy of the project's shared CRD schemas (so a clean
clone, e.g. CI's, has them); when ../shared/k8s-crd-schemas exists beside the repository the
two are compared and any difference fails. Environment:
  CHUKAN_CRD_SCHEMAS         use this folder of CRD schemas instead of k8s/crd-schemas
  CHUKAN_SHARED_CRD_SCHEMAS  compare against this folder instead of ../shared/k8s-crd-schemas
  CHUKAN_K8S_VERSIONS        comma-separated Kubernetes versions (default: see K8S_VERSIONS)
  CHECKOV                    the checkov executable (default: beside this Python)

Exit status: 0 all passed, 1 a check failed, 2 the tools or arguments are broken.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

REPO_ROOT = Path(__file__).resolve().parents[3]
SKIPS_FILE = Path(__file__).resolve().parent / "checkov-skips.yaml"

# The oldest Kubernetes minor a cluster is likely to still run under a provider's extended
# support, and the newest that kubernetes-validate ships schemas for: an API removed or a
# field renamed between the two shows up as a failure of one of them.
K8S_VERSIONS = ("1.33", "1.37")

# API groups whose kinds are Kubernetes' own (served by kube-apiserver, not by a CRD).
_BUILTIN_GROUP = re.compile(r"^([a-z0-9]+|[a-z0-9.-]+\.k8s\.io)$")


@dataclass
class Obj:
    source: str  # file:document-number
    data: dict

    @property
    def api_version(self) -> str:
        return str(self.data.get("apiVersion", ""))

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", ""))

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def ident(self) -> str:
        meta = self.data.get("metadata") or {}
        ns = meta.get("namespace")
        name = meta.get("name", "<no name>")
        return f"{self.kind}/{ns + '/' if ns else ''}{name}"


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)

    def fail(self, where: str, message: str) -> None:
        self.failures.append(f"{where}: {message}")


# ---------------------------------------------------------------------------------------------
# Reading YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (the API server does too,
    while PyYAML would silently keep the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def yaml_files(paths: list[str], report: Report) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if raw == "-":
            files.append(path)  # standard input, e.g. a render piped in
        elif path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            report.fail(raw, "no such file or folder")
    return files


def load_objects(files: list[Path], report: Report) -> list[Obj]:
    objects: list[Obj] = []
    for path in files:
        try:
            text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
            docs = list(yaml.load_all(text, Loader=_StrictLoader))
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            report.fail(str(path), f"not valid YAML: {err}")
            continue
        for number, doc in enumerate(docs, start=1):
            where = f"{path}#{number}"
            if doc is None:
                continue  # an empty document (e.g. a template that rendered nothing)
            if not isinstance(doc, dict):
                report.fail(where, "a document that is not a mapping")
                continue
            items = doc.get("items") if doc.get("kind", "").endswith("List") else None
            for item_no, data in enumerate(items if isinstance(items, list) else [doc]):
                item_where = f"{where}.items[{item_no}]" if isinstance(items, list) else where
                if not isinstance(data, dict) or not data.get("apiVersion") or not data.get("kind"):
                    report.fail(item_where, "an object without apiVersion and kind")
                    continue
                if not (data.get("metadata") or {}).get("name") and not (data.get("metadata") or {}).get("generateName"):
                    report.fail(item_where, f"{data['kind']} without metadata.name")
                    continue
                objects.append(Obj(item_where, data))
    return objects


# ---------------------------------------------------------------------------------------------
# Built-in kinds: kubernetes-validate's schemas, loaded once per version and kind


def _k8s_schema_dir(version: str) -> str:
    return f"kubernetes-json-schema/v{version}.0-local-strict"


@functools.cache
def _k8s_registry(version: str) -> Registry:
    defs = kubernetes_validate.utils.schema_contents(f"{_k8s_schema_dir(version)}/_definitions.json", version)
    return Resource.from_contents(defs) @ Registry()


@functools.cache
def _k8s_validator(version: str, kind: str, api_version: str):
    """The strict validator of one built-in kind, or None when that Kubernetes version has no
    such kind and apiVersion."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kubernetes_validate.utils.schema_contents(
            f"{_k8s_schema_dir(version)}/{kind.lower()}-{group_version}.json", version
        )
    except FileNotFoundError:
        return None
    registry = Resource.from_contents(schema) @ _k8s_registry(version)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _error_lines(errors) -> list[str]:
    lines = []
    for err in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        # For anyOf/oneOf, the most specific sub-error says what is wrong.
        best = jsonschema.exceptions.best_match([err])
        path = ".".join(str(p) for p in best.absolute_path) or "(top level)"
        lines.append(f"{path}: {best.message}")
    return lines


def check_builtin(obj: Obj, versions: tuple[str, ...], report: Report) -> None:
    for version in versions:
        validator = _k8s_validator(version, obj.kind, obj.api_version)
        if validator is None:
            report.fail(
                f"{obj.source} {obj.ident}",
                f"Kubernetes {version} has no {obj.kind} in {obj.api_version} (removed or misspelt; and "
                f"k8s/crd-schemas has no {obj.group}_{obj.kind.lower()}_{obj.version}.json)",
            )
            continue
        for line in _error_lines(validator.iter_errors(obj.data)):
            report.fail(f"{obj.source} {obj.ident}", f"k8s {version}: {line}")


# ---------------------------------------------------------------------------------------------
# Custom resources: the CRDs' openAPIV3Schema


def _strict_crd_schema(node):
    """A copy of a CRD schema in which every object with declared properties refuses unknown
    ones (unless it preserves unknown fields), and `nullable: true` admits null."""
    if isinstance(node, list):
        return [_strict_crd_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict_crd_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else list(out["type"]) + ["null"]
    if "properties" in out:
        # Keys of `properties` are field names, not schema keywords: keep them all.
        out["properties"] = {k: _strict_crd_schema(v) for k, v in node["properties"].items()}
    return out


@functools.cache
def _crd_validator(schema_dir: str, group: str, kind: str, version: str):
    path = Path(schema_dir) / f"{group}_{kind.lower()}_{version}.json"
    if not path.is_file():
        return None
    schema = _strict_crd_schema(json.loads(path.read_text(encoding="utf-8")))
    # metadata is `type: object` in every CRD: check it as the API server does, as ObjectMeta.
    props = schema.setdefault("properties", {})
    props["metadata"] = {"$ref": "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    registry = _k8s_registry(K8S_VERSIONS[-1])
    return jsonschema.Draft202012Validator(schema, registry=registry)


def check_custom(obj: Obj, schema_dir: Path, report: Report) -> None:
    validator = _crd_validator(str(schema_dir), obj.group, obj.kind, obj.version)
    if validator is None:
        report.fail(
            f"{obj.source} {obj.ident}",
            f"custom resource {obj.kind} ({obj.api_version}) has no schema "
            f"{obj.group}_{obj.kind.lower()}_{obj.version}.json in {schema_dir}",
        )
        return
    for line in _error_lines(validator.iter_errors(obj.data)):
        report.fail(f"{obj.source} {obj.ident}", f"CRD schema: {line}")


def check_schema_copy(schema_dir: Path, report: Report) -> None:
    """The repository's copy of the CRD schemas must equal the shared ones, when those are here."""
    shared = Path(os.environ.get("CHUKAN_SHARED_CRD_SCHEMAS") or REPO_ROOT.parent / "shared" / "k8s-crd-schemas")
    if not shared.is_dir():
        return
    ours = {p.name for p in schema_dir.iterdir() if p.is_file()}
    theirs = {p.name for p in shared.iterdir() if p.is_file()}
    for name in sorted(theirs - ours):
        report.fail(str(schema_dir), f"{name} is in {shared} but not copied here (copy the folder again)")
    for name in sorted(ours - theirs):
        report.fail(str(schema_dir), f"{name} is not in {shared} (the copy must match it)")
    for name in sorted(ours & theirs):
        if (schema_dir / name).read_bytes() != (shared / name).read_bytes():
            report.fail(str(schema_dir / name), f"differs from {shared / name} (copy it again)")


# ---------------------------------------------------------------------------------------------
# checkov


@dataclass
class CheckovResult:
    passed: int = 0
    failed: int = 0
    skipped: int = 0


def load_skips(report: Report) -> list[dict]:
    try:
        data = yaml.safe_load(SKIPS_FILE.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        report.fail(str(SKIPS_FILE), f"cannot read the skip list: {err}")
        return []
    skips = data.get("skips") or []
    for skip in skips:
        if not isinstance(skip, dict) or not re.fullmatch(r"CKV2?_K8S_\d+", str(skip.get("id", ""))):
            report.fail(str(SKIPS_FILE), f"a skip needs an id like CKV_K8S_nn: {skip!r}")
        elif not str(skip.get("reason", "")).strip():
            report.fail(str(SKIPS_FILE), f"skip {skip['id']} has no reason")
    return [s for s in skips if isinstance(s, dict)]


def _skip_for(check_id: str, resource: str, skips: list[dict]) -> dict | None:
    for skip in skips:
        if skip.get("id") != check_id:
            continue
        patterns = skip.get("resources") or ["*"]
        if any(fnmatch.fnmatchcase(resource, p) for p in patterns):
            return skip
    return None


def run_checkov(objects: list[Obj], report: Report) -> CheckovResult:
    checkov = os.environ.get("CHECKOV") or str(Path(sys.executable).with_name("checkov"))
    skips = load_skips(report)
    result = CheckovResult()
    with tempfile.TemporaryDirectory(prefix="chukan-checkov-") as tmp:
        # One file per object, named after it, so checkov's file paths point back to sources.
        sources = {}
        for index, obj in enumerate(objects):
            name = f"{index:04d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', obj.ident)}.yaml"
            (Path(tmp) / name).write_text(yaml.safe_dump(obj.data, sort_keys=False), encoding="utf-8")
            sources["/" + name] = obj.source
        cmd = [checkov, "--framework", "kubernetes", "--skip-download", "--compact", "-o", "json", "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        try:
            out = json.loads(proc.stdout) if proc.stdout.strip() else {}
        except json.JSONDecodeError:
            report.fail("checkov", f"unreadable output (exit {proc.returncode}): {proc.stdout[:500]} {proc.stderr[-2000:]}")
            return result
        if proc.returncode not in (0, 1):
            report.fail("checkov", f"exit {proc.returncode}: {proc.stderr[-2000:]}")
            return result
        runs = out if isinstance(out, list) else [out]
        for run in runs:
            if not isinstance(run, dict):
                continue
            # With nothing to check, checkov prints the bare summary instead of a report.
            summary = run.get("summary") or (run if "resource_count" in run else {})
            if summary.get("parsing_errors"):
                report.fail("checkov", f"{summary['parsing_errors']} file(s) could not be parsed")
            results = run.get("results") or {}
            result.passed += len(results.get("passed_checks") or [])
            # Skips written into the objects themselves (checkov.io/skip annotations) count too.
            result.skipped += len(results.get("skipped_checks") or [])
            for check in results.get("failed_checks") or []:
                check_id = check.get("check_id", "?")
                resource = check.get("resource", "?")
                if _skip_for(check_id, resource, skips):
                    result.skipped += 1
                    continue
                result.failed += 1
                source = sources.get(check.get("file_path", ""), check.get("file_path", "?"))
                report.fail(f"{source} {resource}", f"checkov {check_id}: {check.get('check_name', '')}")
    return result


# ---------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="YAML file or folder")
    parser.add_argument("--skip-checkov", action="store_true", help="schemas only (faster)")
    args = parser.parse_args(argv)

    versions = tuple(v.strip() for v in os.environ.get("CHUKAN_K8S_VERSIONS", ",".join(K8S_VERSIONS)).split(",") if v.strip())
    shipped = {kubernetes_validate.utils.major_minor(v) for v in kubernetes_validate.utils.all_versions()}
    missing = [v for v in versions if v not in shipped]
    if missing or len(versions) < 1:
        print(f"validate: kubernetes-validate {kubernetes_validate.__version__} has no schemas for {missing}", file=sys.stderr)
        return 2

    schema_dir = Path(os.environ.get("CHUKAN_CRD_SCHEMAS") or REPO_ROOT / "k8s" / "crd-schemas")
    if not schema_dir.is_dir():
        print(f"validate: no CRD schema folder {schema_dir}", file=sys.stderr)
        return 2

    report = Report()
    if "CHUKAN_CRD_SCHEMAS" not in os.environ:
        check_schema_copy(schema_dir, report)
    objects = load_objects(yaml_files(args.paths, report), report)

    custom = 0
    for obj in objects:
        is_custom = (schema_dir / f"{obj.group}_{obj.kind.lower()}_{obj.version}.json").is_file() or not _BUILTIN_GROUP.match(
            obj.group or "core"
        )
        if is_custom:
            custom += 1
            check_custom(obj, schema_dir, report)
        else:
            check_builtin(obj, versions, report)

    checkov_text = "checkov not run (--skip-checkov)"
    if not args.skip_checkov and objects:
        res = run_checkov(objects, report)
        checkov_text = f"checkov {res.passed} passed {res.failed} failed ({res.skipped} skipped by policy)"

    for line in report.failures:
        print(f"FAIL {line}")
    if not objects and not report.failures:
        report.fail(" ".join(args.paths), "no Kubernetes objects found")
        print(f"FAIL {report.failures[-1]}")
    version_text = "k8s " + ", ".join(versions)
    print(f"validate: {len(objects)} objects ({version_text}), {custom} custom resources, {checkov_text}")
    if report.failures:
        print(f"validate: {len(report.failures)} failure(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
