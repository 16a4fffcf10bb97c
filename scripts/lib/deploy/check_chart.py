#!/usr/bin/env python3
"""The chart checks of scripts/check-deploy (charts/chukan), one subcommand per step.

    check_chart.py render OUT        lint strictly and render every values set into OUT/,
                                     check that every bad values file is rejected
    check_chart.py objects OUT       tests on the rendered objects (OUT/*.yaml)
    check_chart.py rules OUT         extract each render's PrometheusRule groups into
                                     OUT/rules/<set>.yaml (for promtool check rules)
    check_chart.py monitoring-copy   charts/chukan/files/monitoring == monitoring/, byte for byte
    check_chart.py routes OUT BIN    the entry's routing table against `BIN openapi --target=<t>`
    check_chart.py keys OUT BIN      every key of every rendered chukan.toml exists in
                                     `BIN config --print-defaults` (or is a K_file of a secret K)

Values sets: each charts/chukan/ci/*.yaml over the chart's defaults (as chart-testing uses
them), values-east.yaml and values-west.yaml. Bad values files (ci/bad/*.yaml) each start with
`# expect: <text>`: Helm's schema validation must refuse them with a message containing it.
Each subcommand prints one summary line (`key=value ...`) last and exits 1 on a failure.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Iterator

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import render as chart_render  # noqa: E402  (scripts/lib/deploy/render.py)

import helm_python as helm  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "chukan"
RELEASE, NAMESPACE = "chukan", "chukan"

TARGETS = ["admin", "code", "inquiry", "provision", "audit", "notice", "selfinfo", "stats", "relay", "console"]
API_TARGETS = TARGETS[:8]
# Settings whose value is a secret: the chart may only write their `<key>_file` sibling
# (the contract in Settings::load_with).
SECRET_KEYS = {
    "database.url", "database.app_password", "amqp.url", "crypto.kek", "auth.signing_key",
    "relay.signing_key", "audit.signing_key", "console.cookie_key", "nws_sim.signing_key",
    "nws_sim.code_secret", "nws_sim.database_url",
}
# database.url without credentials is not a secret: the chart writes it (the app's host).
WRITABLE_SECRET_KEYS = {"database.url"}
STANDARD_LABELS = [
    "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
    "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of",
    "helm.sh/chart",
]

FAILURES: list[str] = []


def fail(where: str, message: str) -> None:
    FAILURES.append(f"{where}: {message}")


def finish(summary: str) -> int:
    for f in FAILURES:
        print(f"FAIL {f}", file=sys.stderr)
    print(summary)
    return 1 if FAILURES else 0


def values_sets() -> list[tuple[str, list[Path]]]:
    sets = [(f"ci/{p.name}", [p]) for p in sorted((CHART / "ci").glob("*.yaml"))]
    sets += [(p.name, [p]) for p in (CHART / "values-east.yaml", CHART / "values-west.yaml")]
    return sets


def label(set_name: str) -> str:
    return set_name.replace("ci/", "ci-").removesuffix(".yaml")


def load_render(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def renders(out: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    for path in sorted(out.glob("*.yaml")):
        yield path.stem, load_render(path)


def ident(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


# ---------------------------------------------------------------------------------------------
# render


def cmd_render(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    objects = 0
    for set_name, files in values_sets():
        values = chart_render.load_values(files)
        try:
            findings = chart_render.lint(CHART, values, NAMESPACE)
            if findings:
                fail(set_name, "helm lint --strict: " + "; ".join(findings))
                continue
            stream, notes = chart_render.render(CHART, values, RELEASE, NAMESPACE)
        except helm.HelmError as e:
            fail(set_name, f"render: {e}")
            continue
        (out / f"{label(set_name)}.yaml").write_text(stream, encoding="utf-8")
        (out / f"{label(set_name)}.notes.txt").write_text(notes, encoding="utf-8")
        objects += len([d for d in yaml.safe_load_all(stream) if d])
        check_notes(set_name, values, notes)

    bad = sorted((CHART / "ci" / "bad").glob("*.yaml"))
    rejected = 0
    for path in bad:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        m = re.match(r"#\s*expect:\s*(.+)$", first)
        if not m:
            fail(str(path.relative_to(REPO)), "first line must be `# expect: <part of Helm's message>`")
            continue
        expected = m.group(1).strip()
        values = chart_render.load_values([path])
        try:
            chart_render.render(CHART, values, RELEASE, NAMESPACE)
        except helm.HelmValuesError as e:
            if expected in str(e):
                rejected += 1
            else:
                fail(str(path.relative_to(REPO)), f"rejected, but not for {expected!r}: {e}")
            continue
        except helm.HelmError as e:
            fail(str(path.relative_to(REPO)), f"failed in a template, not by the schema: {e}")
            continue
        fail(str(path.relative_to(REPO)), "accepted: the schema must reject it")
    if not bad:
        fail("charts/chukan/ci/bad", "no bad values files")
    return finish(
        f"values_files={len(values_sets())} objects={objects} bad={len(bad)} bad_rejected={rejected}"
    )


def check_notes(set_name: str, values: dict[str, Any], notes: str) -> None:
    """NOTES.txt warns of single replicas and disabled PDBs (checked where a set has them)."""
    targets = values.get("targets", {})
    for t, tv in targets.items():
        if not isinstance(tv, dict) or tv.get("enabled") is False:
            continue
        hpa = (tv.get("hpa") or {}).get("enabled")
        if tv.get("replicas") == 1 and not hpa and f"targets.{t}.replicas is 1" not in notes:
            fail(set_name, f"NOTES.txt does not warn that targets.{t}.replicas is 1")
        if (tv.get("pdb") or {}).get("enabled") is False and f"targets.{t}.pdb is disabled" not in notes:
            fail(set_name, f"NOTES.txt does not warn that targets.{t}.pdb is disabled")


# ---------------------------------------------------------------------------------------------
# objects


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    kind = obj.get("kind")
    if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return obj["spec"]["template"]["spec"]
    if kind == "Pod":
        return obj["spec"]
    return None


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    if obj.get("kind") == "Pod":
        return obj["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"].get("labels", {})


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """matchLabels/matchExpressions (In, NotIn, Exists, DoesNotExist) against labels."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, vals = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and labels.get(key) in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def walk_strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk_strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


SECRETISH_NAME = re.compile(r"(PASS|SECRET|TOKEN|KEY|KEK|CREDENTIAL|PRIVATE|COOKIE)", re.I)
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.I)
LONG_BASE64 = re.compile(r"^[A-Za-z0-9+/]{40,}={0,2}$")


def check_no_secret_values(where: str, obj: dict[str, Any], local_secrets: set[str]) -> None:
    kind = obj.get("kind")
    if kind == "Secret":
        fail(where, "the chart renders a Secret: secrets are only references to existing ones")
        return
    spec = pod_spec(obj)
    if spec:
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            if c.get("envFrom"):
                fail(where, f"container {c['name']}: envFrom (secrets reach the binary as files only)")
            for env in c.get("env", []):
                if "valueFrom" in env:
                    fail(where, f"container {c['name']}: env {env['name']} from a reference (files only)")
                elif SECRETISH_NAME.search(env["name"]) or looks_secret(str(env.get("value", ""))):
                    fail(where, f"container {c['name']}: env {env['name']} looks like a secret")
    for path, value in walk_strings(obj):
        if "PRIVATE KEY-----" in value:
            fail(where, f"{path} holds a private key")
        if URL_WITH_PASSWORD.search(value):
            fail(where, f"{path} holds a URL with a password")
        if any(s in value for s in local_secrets):
            fail(where, f"{path} holds one of the test secret values")
    if kind == "ConfigMap" and "chukan.toml" in obj.get("data", {}):
        settings = tomllib.loads(obj["data"]["chukan.toml"])
        for key in SECRET_KEYS - WRITABLE_SECRET_KEYS:
            section, name = key.split(".")
            if name in settings.get(section, {}):
                fail(where, f"chukan.toml sets {key} (only {key}_file, a mounted Secret, may be set)")


def looks_secret(value: str) -> bool:
    return bool(LONG_BASE64.match(value) or URL_WITH_PASSWORD.search(value))


def cmd_objects(out: Path) -> int:
    local_secrets = {
        str(v) for keys in yaml.safe_load((REPO / "scripts/lib/deploy/local-secrets.yaml").read_text()).values()
        for v in keys.values() if len(str(v)) >= 12
    }
    checked = 0
    for set_label, objs in renders(out):
        checked += len(objs)
        check_render(set_label, objs, local_secrets)
    return finish(f"objects_checked={checked}")


def check_render(set_label: str, objs: list[dict[str, Any]], local_secrets: set[str]) -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    if len(names) != len(objs):
        fail(set_label, "two objects share a kind and name")
    values_set = values_for_label(set_label)
    owner = (values_set.get("migration") or {}).get("ownerUrlSecret") or {"name": "chukan-db-owner", "key": "uri"}

    for o in objs:
        where = f"{set_label} {ident(o)}"
        labels = o["metadata"].get("labels", {})
        if o["kind"] == "ConfigMap" and "chukan.toml" in o.get("data", {}):
            check_least_privilege(where, labels.get("app.kubernetes.io/component", ""), o["data"]["chukan.toml"])
        for key in STANDARD_LABELS:
            if not labels.get(key):
                fail(where, f"missing label {key}")
        if o["metadata"].get("namespace") != NAMESPACE:
            fail(where, "no metadata.namespace of the release")
        check_no_secret_values(where, o, local_secrets)
        spec = pod_spec(o)
        if spec is not None:
            check_pod(where, o, spec)

    deployments = by_kind.get("Deployment", [])
    pdbs = by_kind.get("PodDisruptionBudget", [])
    policies = by_kind.get("NetworkPolicy", [])
    services = by_kind.get("Service", [])
    configmaps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind.get("HorizontalPodAutoscaler", [])}
    for d in deployments:
        where = f"{set_label} {ident(d)}"
        labels = pod_labels(d)
        if not selects(d["spec"]["selector"], labels):
            fail(where, "its selector does not select its own pods")
        component = labels.get("app.kubernetes.io/component", "")
        pdb_off = ((values_set.get("targets", {}).get(component) or {}).get("pdb") or {}).get("enabled") is False
        if not pdb_off and not any(selects(p["spec"]["selector"], labels) for p in pdbs):
            fail(where, "no PodDisruptionBudget selects its pods")
        if not any(selects(p["spec"]["podSelector"], labels) for p in policies):
            fail(where, "no NetworkPolicy selects its pods")
        if not any(selects({"matchLabels": s["spec"].get("selector", {})}, labels) for s in services):
            fail(where, "no Service selects its pods")
        if d["metadata"]["name"] in hpas and "replicas" in d["spec"]:
            fail(where, "has an HPA and a fixed replicas (they would fight)")
        # The settings file's checksum rolls the pods on a change.
        spec = d["spec"]["template"]["spec"]
        cm_names = [v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v]
        annotation = d["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/config")
        for name in cm_names:
            cm = configmaps.get(name)
            if cm is None:
                fail(where, f"mounts ConfigMap {name}, which is not rendered")
            elif annotation != hashlib.sha256(cm["data"]["chukan.toml"].rstrip("\n").encode()).hexdigest():
                fail(where, f"checksum/config is not the sha256 of ConfigMap {name}'s chukan.toml")
        for v in spec.get("volumes", []):
            for src in (v.get("projected") or {}).get("sources", []):
                sec = src.get("secret")
                if sec and sec["name"] == owner["name"] and any(i["key"] == owner["key"] for i in sec.get("items", [])):
                    fail(where, "mounts the database owner's URL (only the migration Job may)")
    for h in hpas.values():
        if not any(d["metadata"]["name"] == h["spec"]["scaleTargetRef"]["name"] for d in deployments):
            fail(f"{set_label} {ident(h)}", "scales a Deployment that is not rendered")
        comp = h["metadata"]["labels"].get("app.kubernetes.io/component")
        if comp in ("provision", "audit", "relay"):
            fail(f"{set_label} {ident(h)}", f"{comp} does once-per-cell work under a lease: no HPA")
    for ing in by_kind.get("Ingress", []):
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                svc = p["backend"]["service"]
                match = [s for s in services if s["metadata"]["name"] == svc["name"]]
                if not match:
                    fail(f"{set_label} {ident(ing)}", f"{p['path']} goes to Service {svc['name']}, not rendered")
                elif svc["port"].get("name") not in {pt.get("name") for pt in match[0]["spec"]["ports"]}:
                    fail(f"{set_label} {ident(ing)}", f"{p['path']}: Service {svc['name']} has no port {svc['port']}")
    accounts = {a["metadata"]["name"]: a for a in by_kind.get("ServiceAccount", [])}
    for o in objs:
        spec = pod_spec(o)
        if spec is None:
            continue
        name = spec.get("serviceAccountName", "default")
        account = accounts.get(name)
        if account is None and name != "default" and values_set.get("serviceAccount", {}).get("create", True):
            fail(f"{set_label} {ident(o)}", f"runs as ServiceAccount {name}, which is not rendered")
        if account and (o["metadata"].get("annotations") or {}).get("helm.sh/hook", "").startswith("pre-install") \
                and "pre-install" not in (account["metadata"].get("annotations") or {}).get("helm.sh/hook", ""):
            fail(f"{set_label} {ident(o)}", f"a pre-install hook running as {name}, which does not exist before the install")
    jobs = by_kind.get("Job", [])
    for j in jobs:
        ann = j["metadata"].get("annotations", {})
        if ann.get("helm.sh/hook") != "pre-install,pre-upgrade" or "helm.sh/hook-delete-policy" not in ann:
            fail(f"{set_label} {ident(j)}", "the migration Job must be a pre-install,pre-upgrade hook with a delete policy")
        if j["spec"]["template"]["spec"]["containers"][0]["args"][-1] != "migrate":
            fail(f"{set_label} {ident(j)}", "does not run `chukan migrate`")
    for p in by_kind.get("Pod", []):
        if p["metadata"].get("annotations", {}).get("helm.sh/hook") != "test":
            fail(f"{set_label} {ident(p)}", "a bare Pod that is not a helm test hook")


# Secret files only the named components' settings may name: a signing key stays with the
# one service that signs, the owner's database URL with the migration.
SECRET_FILE_OWNERS = {
    "database.url_file": {"migration"},
    "auth.signing_key_file": {"admin"},
    "relay.signing_key_file": {"relay"},
    "audit.signing_key_file": {"audit"},
    "console.cookie_key_file": {"console"},
}


def check_least_privilege(where: str, component: str, text: str) -> None:
    keys = flatten(tomllib.loads(text))
    for key, owners in SECRET_FILE_OWNERS.items():
        if key in keys and component not in owners:
            fail(where, f"{component}'s settings name {key}: only {sorted(owners)} may hold that secret")
    if component == "console" and any(k in keys for k in ("database.app_password_file", "amqp.url_file", "crypto.kek_file")):
        fail(where, "the console has no database, bus or data key: it must not hold their secrets")


def check_pod(where: str, obj: dict[str, Any], spec: dict[str, Any]) -> None:
    if spec.get("automountServiceAccountToken") is not False:
        fail(where, "automountServiceAccountToken is not false")
    psc = spec.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") != 10001:
        fail(where, "pod securityContext: runAsNonRoot with UID 10001 expected")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        fail(where, "pod seccompProfile is not RuntimeDefault")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for v in volumes.values():
        if "projected" in v and v["projected"].get("defaultMode") != 0o400:
            fail(where, f"volume {v['name']}: secret files must be mode 0400")
        if "secret" in v:
            fail(where, f"volume {v['name']}: secrets are mounted through projected volumes (0400)")
    for c in spec.get("containers", []):
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(cw, "allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(cw, "readOnlyRootFilesystem is not true")
        if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
            fail(cw, "capabilities do not drop ALL")
        if sc.get("privileged"):
            fail(cw, "privileged")
        res = c.get("resources") or {}
        if not (res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory")):
            fail(cw, "no cpu and memory requests")
        if not res.get("limits", {}).get("memory"):
            fail(cw, "no memory limit")
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        tmp = mounts.get("/tmp")
        if not tmp or "emptyDir" not in volumes.get(tmp["name"], {}):
            fail(cw, "no emptyDir at /tmp (the only writable place)")
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                fail(cw, f"mounts volume {m['name']}, which the pod does not have")
        if obj["kind"] == "Deployment":
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            if ports.get("ops") != 9090 and "ops" not in ports:
                fail(cw, "no ops port")
            for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
                get = (c.get(probe) or {}).get("httpGet") or {}
                if get.get("path") != path or get.get("port") not in ("ops", ports.get("ops")):
                    fail(cw, f"{probe} is not GET {path} on the ops port")


_VALUES_CACHE: dict[str, dict[str, Any]] = {}


def values_for_label(set_label: str) -> dict[str, Any]:
    if not _VALUES_CACHE:
        for set_name, files in values_sets():
            _VALUES_CACHE[label(set_name)] = chart_render.load_values(files)
    return _VALUES_CACHE.get(set_label, {})


# ---------------------------------------------------------------------------------------------
# rules, monitoring copy


def cmd_rules(out: Path) -> int:
    rules_dir = out / "rules"
    rules_dir.mkdir(exist_ok=True)
    count = 0
    for set_label, objs in renders(out):
        for o in objs:
            if o["kind"] == "PrometheusRule":
                groups = o["spec"]["groups"]
                (rules_dir / f"{set_label}.yaml").write_text(
                    yaml.safe_dump({"groups": groups}, sort_keys=False, allow_unicode=True), encoding="utf-8"
                )
                count += 1
                source_groups = []
                for f in sorted((REPO / "monitoring/rules").glob("*.yaml")):
                    source_groups += yaml.safe_load(f.read_text(encoding="utf-8"))["groups"]
                if groups != source_groups:
                    fail(f"{set_label} {ident(o)}", "groups differ from monitoring/rules/*.yaml")
    if count == 0:
        fail("renders", "no values set renders a PrometheusRule (ci/full-values.yaml should)")
    return finish(f"prometheus_rules={count}")


MONITORING_COPIES = [
    (REPO / "monitoring/rules", "*.yaml", CHART / "files/monitoring/rules"),
    (REPO / "monitoring/dashboards/out", "*.json", CHART / "files/monitoring/dashboards"),
]


def cmd_monitoring_copy() -> int:
    files = 0
    for source, pattern, copy in MONITORING_COPIES:
        want = {p.name: p.read_bytes() for p in source.glob(pattern)}
        have = {p.name: p.read_bytes() for p in copy.glob("*")}
        for name in sorted(want.keys() | have.keys()):
            if name not in have:
                fail(str(copy.relative_to(REPO)), f"{name} is missing (new in {source.relative_to(REPO)})")
            elif name not in want:
                fail(str(copy.relative_to(REPO)), f"{name} is not in {source.relative_to(REPO)} any more")
            elif want[name] != have[name]:
                fail(str(copy.relative_to(REPO)), f"{name} differs from {source.relative_to(REPO)}/{name}")
        files += len(want)
    if FAILURES:
        print("refresh the chart's copy with: scripts/check-deploy --refresh-monitoring", file=sys.stderr)
    return finish(f"monitoring_files={files}")


# ---------------------------------------------------------------------------------------------
# routes, keys (need the binary)


def entry_routes(out: Path) -> dict[str, str]:
    """path -> target, from the Ingress of the render with every target (ci/full-values)."""
    objs = load_render(out / "ci-full-values.yaml")
    values = values_for_label("ci-full-values")
    api_host = values["ingress"]["host"]
    routes = {}
    for o in objs:
        if o["kind"] == "Ingress":
            # The API's host only (the console's host sends / to the console).
            for rule in (r for r in o["spec"]["rules"] if r["host"] == api_host):
                for p in rule["http"]["paths"]:
                    routes[p["path"]] = p["backend"]["service"]["name"].removeprefix(f"{RELEASE}-")
    return routes


def route_of(path: str, routes: dict[str, str]) -> tuple[str, str] | None:
    """The longest prefix (element-wise, as Ingress pathType Prefix) matching path."""
    best = None
    for prefix, target in routes.items():
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, target)
    return best


def openapi_paths(binary: str, target: str | None) -> list[str]:
    args = [binary, "openapi"] + ([f"--target={target}"] if target else [])
    doc = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    return sorted(doc.get("paths", {}))


def cmd_routes(out: Path, binary: str) -> int:
    routes = entry_routes(out)
    if not routes:
        fail("ci/full-values", "no Ingress rendered")
        return finish("routes=0")
    used: set[str] = set()
    paths_total = 0
    for target in API_TARGETS:
        for path in openapi_paths(binary, target):
            paths_total += 1
            hit = route_of(path, routes)
            if hit is None:
                fail("entry", f"{path} (served by {target}) is routed nowhere")
            elif hit[1] != target:
                fail("entry", f"{path} is served by {target} but routed to {hit[1]} (prefix {hit[0]})")
            else:
                used.add(hit[0])
    whole = openapi_paths(binary, None)
    for path in whole:
        if route_of(path, routes) is None:
            fail("entry", f"{path} of the whole API is routed nowhere")
    for prefix in routes:
        if prefix not in used and prefix not in ("/v1/openapi.json", "/.well-known/jwks.json"):
            fail("entry", f"route {prefix} -> {routes[prefix]} matches no path of that target's document")
    if routes.get("/v1/openapi.json") != "admin":
        fail("entry", "/v1/openapi.json must go to admin")
    return finish(f"routes={len(routes)} api_paths={paths_total}")


def flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def cmd_keys(out: Path, binary: str) -> int:
    defaults_text = subprocess.run(
        [binary, "config", "--print-defaults"], check=True, capture_output=True, text=True
    ).stdout
    defaults = flatten(tomllib.loads(defaults_text))
    files = 0
    for set_label, objs in renders(out):
        for o in objs:
            text = (o.get("data") or {}).get("chukan.toml") if o["kind"] == "ConfigMap" else None
            if text is None:
                continue
            files += 1
            for key in flatten(tomllib.loads(text)):
                if key in defaults:
                    continue
                if key.endswith("_file") and key.removesuffix("_file") in SECRET_KEYS:
                    continue
                fail(f"{set_label} {ident(o)}", f"chukan.toml sets {key}, which the binary does not know "
                     "(not in `chukan config --print-defaults`, nor a *_file of a secret setting)")
    return finish(f"settings_files={files}")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "render":
        return cmd_render(Path(rest[0]))
    if cmd == "objects":
        return cmd_objects(Path(rest[0]))
    if cmd == "rules":
        return cmd_rules(Path(rest[0]))
    if cmd == "monitoring-copy":
        return cmd_monitoring_copy()
    if cmd == "routes":
        return cmd_routes(Path(rest[0]), rest[1])
    if cmd == "keys":
        return cmd_keys(Path(rest[0]), rest[1])
    print(f"unknown subcommand {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
