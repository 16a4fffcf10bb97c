"""Checks of the generated dashboards (monitoring/dashboards/out/*.json), run by
scripts/check-dashboards:

    check.py lint [--repo ROOT] OUT_DIR  the repository's rules for every dashboard and panel;
                                       with --repo also: every metric a query names is
                                       exported by the Rust code or recorded by
                                       monitoring/rules (so a typo cannot hide behind
                                       `or on() vector(0)`)
    check.py summary OUT_DIR           "N dashboards, N panels, N queries"
    check.py query --url URL OUT_DIR   every panel target asked of a real Prometheus: it must
                                       parse and return at least one series

Standard library only (it runs in tools/venv-dashboards, but needs nothing from the SDK).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

DATASOURCE_VAR = "datasource"
DATASOURCE_UIDS = {"${datasource}", "$datasource"}
RATE_CALL = re.compile(r"(?<![A-Za-z0-9_:])(rate|irate|increase)\s*\(")
RANGE = re.compile(r"\[([^\]]*)\]")

# What Grafana would put in place of its built-in variables, for asking Prometheus directly.
FALLBACK = " or on() vector(0)"
BUILTINS = {
    "__rate_interval": "30s",
    "__interval": "5s",
    "__range": "5m",
}


def load(out_dir: Path) -> list[tuple[str, dict]]:
    files = sorted(out_dir.glob("*.json"))
    if not files:
        raise SystemExit(f"no dashboards in {out_dir}")
    return [(f.name, json.loads(f.read_text(encoding="utf-8"))) for f in files]


def panels(dash: dict) -> list[dict]:
    """Every panel, rows excluded; panels nested in (collapsed) rows included."""
    found = []
    for panel in dash.get("panels", []):
        if panel.get("type") == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def call_argument(expr: str, open_paren: int) -> str:
    """The text between the parenthesis at `open_paren` and its match."""
    depth = 0
    for i in range(open_paren, len(expr)):
        if expr[i] == "(":
            depth += 1
        elif expr[i] == ")":
            depth -= 1
            if depth == 0:
                return expr[open_paren + 1 : i]
    return expr[open_paren + 1 :]


def rate_window_problems(expr: str) -> list[str]:
    problems = []
    for m in RATE_CALL.finditer(expr):
        arg = call_argument(expr, m.end() - 1)
        windows = RANGE.findall(arg)
        if not windows:
            problems.append(f"{m.group(1)}() without a range window")
        for window in windows:
            if window.strip() not in ("$__rate_interval", "${__rate_interval}"):
                problems.append(f"{m.group(1)}() window [{window}] is not [$__rate_interval]")
    return problems


STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """Names of chukan metrics and recording rules an expression reads (label names and
    values never contain 'chukan' in this repository's metrics)."""
    bare = STRING.sub('""', expr)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    return {t for t in IDENT.findall(bare) if "chukan" in t}


def known_names(repo: Path) -> set[str]:
    """Metric names in the Rust sources and recording rule names in monitoring/rules."""
    names: set[str] = set()
    for top in ("crates", "services", "chukan"):
        for path in (repo / top).rglob("*.rs"):
            names.update(re.findall(r'"(chukan_[a-z0-9_]+)"', path.read_text(encoding="utf-8", errors="replace")))
    for path in (repo / "monitoring" / "rules").glob("*.yaml"):
        names.update(re.findall(r"^\s*-?\s*record:\s*(\S+)", path.read_text(encoding="utf-8"), re.M))
    return names


def unknown_name(name: str, known: set[str]) -> bool:
    if name in known:
        return False
    return not any(name.endswith(sfx) and name[: -len(sfx)] in known for sfx in HISTOGRAM_SUFFIXES)


def lint(out_dir: Path, repo: Path | None = None) -> int:
    problems: list[str] = []
    uids: dict[str, str] = {}
    known = known_names(repo) if repo else set()
    for name, dash in load(out_dir):
        where = name

        def bad(msg: str, at: str = "") -> None:
            problems.append(f"{where}{': ' + at if at else ''}: {msg}")

        for field in ("title", "description", "uid"):
            if not str(dash.get(field) or "").strip():
                bad(f"dashboard has no {field}")
        uid = dash.get("uid")
        if uid in uids:
            bad(f"uid {uid} is also the uid of {uids[uid]}")
        uids[str(uid)] = name

        variables = dash.get("templating", {}).get("list", [])
        ds_vars = [v for v in variables if v.get("name") == DATASOURCE_VAR]
        if not ds_vars:
            bad("no template variable named 'datasource'")
        elif ds_vars[0].get("type") != "datasource" or ds_vars[0].get("query") != "prometheus":
            bad("variable 'datasource' is not a data source variable of type prometheus")
        for var in variables:
            if var.get("type") == "query":
                uid_ = (var.get("datasource") or {}).get("uid")
                if uid_ not in DATASOURCE_UIDS:
                    bad(f"variable {var.get('name')} does not query ${{datasource}} (has {uid_!r})")

        ids = set()
        for panel in dash.get("panels", []):
            if panel.get("type") == "row" and not str(panel.get("title") or "").strip():
                bad("a row has no title")
        for panel in panels(dash):
            at = f"panel {panel.get('title')!r}"
            if panel.get("id") in ids:
                bad(f"duplicate panel id {panel.get('id')}", at)
            ids.add(panel.get("id"))
            if not str(panel.get("title") or "").strip():
                bad("panel has no title", at)
            if not str(panel.get("description") or "").strip():
                bad("panel has no description", at)
            unit = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
            if not str(unit or "").strip():
                bad("panel has no unit (fieldConfig.defaults.unit)", at)
            if (panel.get("datasource") or {}).get("uid") not in DATASOURCE_UIDS:
                bad("panel does not use the ${datasource} variable", at)
            targets = panel.get("targets") or []
            if not targets:
                bad("panel has no targets", at)
            for target in targets:
                tat = f"{at} target {target.get('refId')}"
                if (target.get("datasource") or {}).get("uid") not in DATASOURCE_UIDS:
                    bad("target does not use the ${datasource} variable", tat)
                expr = str(target.get("expr") or "")
                if not expr.strip():
                    bad("target has no expr", tat)
                for problem in rate_window_problems(expr):
                    bad(problem, tat)
                if repo:
                    for name in sorted(metric_names(expr)):
                        if unknown_name(name, known):
                            bad(f"{name} is neither exported by the Rust code nor a recording rule", tat)

    for problem in problems:
        print(f"lint: {problem}", file=sys.stderr)
    if problems:
        print(f"lint: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    return 0


def counts(out_dir: Path) -> tuple[int, int, int]:
    dashboards = load(out_dir)
    all_panels = [p for _, d in dashboards for p in panels(d)]
    queries = sum(len(p.get("targets") or []) for p in all_panels)
    return len(dashboards), len(all_panels), queries


def substitute(expr: str, variables: list[str]) -> str:
    """The expression as Prometheus would get it from Grafana, every template variable at
    'all' (.*): an equality matcher on a variable becomes a regular-expression matcher."""
    for name in variables:
        ref = rf"(?:\$\{{{name}(?::[a-z]+)?\}}|\${name}\b|\[\[{name}\]\])"
        expr = re.sub(rf'(\w+)\s*=\s*"{ref}"', r'\1=~".*"', expr)
        expr = re.sub(rf'(\w+)\s*!=\s*"{ref}"', r'\1!~".*"', expr)
        expr = re.sub(ref, ".*", expr)
    for name, value in BUILTINS.items():
        expr = re.sub(rf"\$\{{{name}\}}|\${name}\b", value, expr)
    return expr


def ask(url: str, expr: str) -> tuple[str, int]:
    """('ok' | an error text, number of series)."""
    query = urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as res:
            body = json.load(res)
    except urllib.error.HTTPError as err:
        try:
            body = json.load(err)
        except ValueError:
            return f"HTTP {err.code}", 0
    except (urllib.error.URLError, OSError, ValueError) as err:
        return f"request failed: {err}", 0
    if body.get("status") != "success":
        return f"{body.get('errorType')}: {body.get('error')}", 0
    data = body.get("data", {})
    if data.get("resultType") in ("scalar", "string"):
        return "ok", 1
    return "ok", len(data.get("result", []))


def query(url: str, out_dir: Path, patience: float) -> int:
    dashboards = load(out_dir)
    jobs = []
    for name, dash in dashboards:
        variables = [
            v["name"]
            for v in dash.get("templating", {}).get("list", [])
            if v.get("name") != DATASOURCE_VAR
        ]
        for panel in panels(dash):
            for target in panel.get("targets") or []:
                expr = substitute(str(target.get("expr") or ""), variables)
                where = f"{dash.get('title')} ({name}) / panel {panel.get('title')!r} / {target.get('refId')}"
                jobs.append((where, expr))

    # Series of counters that the flow creates last (an answer consumed a moment after the
    # flow saw it) may need a few more scrapes: an empty answer is asked again until
    # `patience` seconds have passed. A query that does not parse fails at once.
    deadline = time.monotonic() + patience
    pending = list(jobs)
    failed: list[tuple[str, str, str]] = []
    while True:
        empty = []
        for where, expr in pending:
            status, n = ask(url, expr)
            if status != "ok":
                failed.append((where, expr, status))
            elif n == 0:
                empty.append((where, expr))
        if not empty or time.monotonic() >= deadline:
            failed.extend((w, e, "no series") for w, e in empty)
            break
        pending = empty
        time.sleep(1)

    for where, expr, status in failed:
        print(f"query FAILED ({status}): {where}\n    {expr}", file=sys.stderr)

    # Informational: which queries answered only through their `or on() vector(0)` (the
    # events they count have not happened in this run).
    fallback_only = []
    for where, expr in jobs:
        if expr.endswith(FALLBACK):
            status, n = ask(url, expr[: -len(FALLBACK)])
            if status == "ok" and n == 0:
                fallback_only.append(where)
    if fallback_only:
        print(f"{len(fallback_only)} queries answered by their 0 fallback (no such events in this run):", file=sys.stderr)
        for where in fallback_only:
            print(f"    {where}", file=sys.stderr)
    n_dash, n_panels, _ = counts(out_dir)
    if failed:
        print(f"{len(failed)} of {len(jobs)} queries failed", file=sys.stderr)
        return 1
    print(f"{n_dash} dashboards, {n_panels} panels, {len(jobs)} queries with series")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_lint = sub.add_parser("lint")
    p_lint.add_argument("--repo", type=Path)
    p_lint.add_argument("out_dir", type=Path)
    p_sum = sub.add_parser("summary")
    p_sum.add_argument("out_dir", type=Path)
    p_query = sub.add_parser("query")
    p_query.add_argument("--url", required=True)
    p_query.add_argument("--patience", type=float, default=20.0)
    p_query.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    if args.command == "lint":
        return lint(args.out_dir, args.repo)
    if args.command == "summary":
        d, p, q = counts(args.out_dir)
        print(f"{d} dashboards, {p} panels, {q} queries")
        return 0
    return query(args.url.rstrip("/"), args.out_dir, args.patience)


if __name__ == "__main__":
    sys.exit(main())
