#!/usr/bin/env python3
"""Static checks of the image recipe, which cannot be built here (no base images to pull).

    python3 scripts/lib/deploy/check_containerfile.py [Containerfile]

Checks what docs/image.md promises: a multi-stage build whose builder runs
`cargo build --release --locked -p chukan`; a final stage that runs no commands (the
runtime image has no shell), runs as the fixed non-root 10001:10001, has an exec-form
ENTRYPOINT of /usr/local/bin/chukan, exposes the four ports and carries the OCI labels;
no ADD anywhere (nothing fetched from URLs, no archives unpacked implicitly); base images
never `latest` nor untagged; and a .containerignore that keeps target/ and tools/ out of the
build context. Standard library only. Exit 1 with a line per problem.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
REQUIRED_LABELS = (
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.created",
    "org.opencontainers.image.licenses",
)
REQUIRED_PORTS = {"8080", "8081", "8088", "9090"}
IGNORED_PATHS = ("target", "tools", ".git")


def instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    out: list[tuple[int, str, str]] = []
    buffer, start = "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        word, _, rest = buffer.partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buffer = ""
    return out


def check(path: Path) -> list[str]:
    problems: list[str] = []
    steps = instructions(path.read_text(encoding="utf-8"))
    args: dict[str, str] = {}
    stages: list[list[tuple[int, str, str]]] = []
    for step in steps:
        number, word, rest = step
        if word == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        if word == "FROM":
            stages.append([])
            image = rest.split()[0]
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), image)
            if "@sha256:" not in image:
                tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
                if not tag or tag == "latest":
                    problems.append(f"line {number}: base image {image!r} has no fixed tag or digest")
        if word == "ADD":
            problems.append(f"line {number}: ADD (use COPY; nothing may be fetched from a URL)")
        if stages:
            stages[-1].append(step)

    if len(stages) < 2:
        problems.append("not a multi-stage build (a builder and a runtime stage)")
        return problems
    builder, final = stages[:-1], stages[-1]
    if not any(w == "RUN" and "cargo build --release --locked -p chukan" in r for s in builder for _, w, r in s):
        problems.append("no builder stage runs `cargo build --release --locked -p chukan`")

    for number, word, _ in final:
        if word == "RUN":
            problems.append(f"line {number}: RUN in the final stage (the runtime image has no shell)")
    users = [r for _, w, r in final if w == "USER"]
    if not users or users[-1] != "10001:10001":
        problems.append(f"the final stage's USER is {users[-1] if users else 'unset'!r}, not 10001:10001")
    entrypoints = [r for _, w, r in final if w == "ENTRYPOINT"]
    try:
        entry = json.loads(entrypoints[-1]) if entrypoints else None
    except json.JSONDecodeError:
        entry = None
    if entry != ["/usr/local/bin/chukan"]:
        problems.append('the final stage needs ENTRYPOINT ["/usr/local/bin/chukan"] (exec form)')
    exposed = {p.split("/")[0] for _, w, r in final if w == "EXPOSE" for p in r.split()}
    if REQUIRED_PORTS - exposed:
        problems.append(f"the final stage does not EXPOSE {sorted(REQUIRED_PORTS - exposed)}")
    labels: set[str] = set()
    for _, word, rest in final:
        if word == "LABEL":
            for token in shlex.split(rest):
                labels.add(token.partition("=")[0])
    for label in REQUIRED_LABELS:
        if label not in labels:
            problems.append(f"the final stage has no LABEL {label}")

    ignore = path.parent / ".containerignore"
    if not ignore.is_file():
        problems.append(f"{ignore} is missing")
    else:
        entries = {line.strip().strip("/") for line in ignore.read_text(encoding="utf-8").splitlines()}
        for needed in IGNORED_PATHS:
            if needed not in entries:
                problems.append(f"{ignore.name} does not exclude {needed}/")
    return problems


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else REPO_ROOT / "Containerfile"
    if not path.is_file():
        print(f"check_containerfile: no {path}")
        return 1
    problems = check(path)
    for problem in problems:
        print(f"FAIL {path}: {problem}")
    print(f"check_containerfile: {path.name} {'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
