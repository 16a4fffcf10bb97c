#!/usr/bin/env python3
"""The drift check: the chart really configures the binary.

    drift.py RENDER BIN SECRETS WORKDIR

RENDER is the chart rendered with ci/local-values.yaml; BIN the chukan binary; SECRETS
scripts/lib/deploy/local-secrets.yaml (test values for the referenced Secrets); WORKDIR an
empty temporary folder. For the migration Job and then every Deployment it takes the
container's command, args and env and the settings file of the ConfigMap it mounts, writes
each projected Secret key the pod would mount to a file in WORKDIR and points the settings
file's /etc/chukan/... paths at those files (a path the pod does not mount is an error),
and runs the process locally:

  - the migration Job's command must exit 0; then the test database holds the services'
    schemas (it read database.url_file), the application role's stored password is the test
    password (database.app_password_file) and the test vhost holds the queues (amqp.url_file);
  - every Deployment's process must answer 200 on /readyz of its ops port before a deadline;
    admin's JWKS publishes the test signing key, relay's and audit's public keys are the test
    seeds' (their *_file settings were read);
  - the helm test Pod's command (`chukan probe ...`) must exit 0 against them;
  - on SIGTERM every process must exit 0 within its grace period.

Only what cannot be the same on one machine is changed, through the environment
(CHUKAN__*, which overrides the file): listeners bind 127.0.0.1 on free ports, and URLs
naming a chart Service (http://chukan-admin:8080/...) point at that target's local port.

drift_tls.py runs the same check (`run`) with ci/local-tls-values.yaml against servers of
its own that speak TLS only; `Links` says how this module reaches the servers.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

RELEASE = "chukan"
READY_DEADLINE_S = float(os.environ.get("CHECK_DEPLOY_READY_DEADLINE", "150"))
CONFIG_MOUNT = "/etc/chukan/chukan.toml"


class Failure(Exception):
    pass


def shared_queues(vhost: str) -> list[str]:
    """The queue names of a vhost of the machine's shared RabbitMQ node."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers", "name"],
                         capture_output=True, text=True, timeout=60).stdout
    return out.split()


@dataclass
class Links:
    """How the check itself reaches the servers and the processes' HTTPS listeners. The
    defaults are the machine's shared, plaintext PostgreSQL and RabbitMQ."""
    # libpq environment for psql (e.g. PGSSLMODE, PGSSLROOTCERT).
    pg_env: dict[str, str] = field(default_factory=dict)
    # vhost -> names of its queues.
    list_queues: Callable[[str], list[str]] = shared_queues
    # Trust for https:// URLs of the processes (the API with certificates.api); None = none.
    https: ssl.SSLContext | None = None
    # Checks while every process is ready: called with {component: Workload}.
    while_ready: Callable[[dict[str, "Workload"]], None] | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class Workload:
    """One pod's process, made runnable here."""

    def __init__(self, obj: dict[str, Any], configmaps: dict[str, dict], secrets: dict, workdir: Path, binary: str):
        self.kind = obj["kind"]
        self.name = obj["metadata"]["name"]
        self.component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        spec = obj["spec"]["template"]["spec"]
        if len(spec["containers"]) != 1:
            raise Failure(f"{self.name}: one container expected")
        self.container = c = spec["containers"][0]
        self.dir = workdir / self.name
        self.dir.mkdir(parents=True)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}

        # Files the pod has: path inside the pod -> local test file.
        files = write_secret_files(self.name, spec, c, secrets, self.dir / "files")
        toml_text = None
        for m in c.get("volumeMounts", []):
            vol = volumes[m["name"]]
            if "configMap" in vol:
                cm = configmaps.get(vol["configMap"]["name"])
                if cm is None:
                    raise Failure(f"{self.name}: mounts ConfigMap {vol['configMap']['name']}, not rendered")
                key = m.get("subPath")
                if m["mountPath"] != CONFIG_MOUNT or key != "chukan.toml":
                    raise Failure(f"{self.name}: unexpected ConfigMap mount {m['mountPath']}")
                toml_text = cm["data"][key]
        if toml_text is None:
            raise Failure(f"{self.name}: mounts no settings file at {CONFIG_MOUNT}")

        # The settings file, its mounted paths pointed at the test files.
        for pod_path, local in files.items():
            toml_text = toml_text.replace(f'"{pod_path}"', f'"{local}"')
        left = re.findall(r'"(/etc/chukan/[^"]*)"', toml_text)
        if left:
            raise Failure(f"{self.name}: chukan.toml names {left}, which the pod does not mount")
        self.config_path = self.dir / "chukan.toml"
        self.config_path.write_text(toml_text, encoding="utf-8")
        self.settings = tomllib.loads(toml_text)

        args = list(c.get("command", [])) + list(c.get("args", []))
        if not args or not args[0].endswith("/chukan"):
            raise Failure(f"{self.name}: command {args} does not run chukan")
        self.argv = [binary] + [self.config_path.as_posix() if a == CONFIG_MOUNT else a for a in args[1:]]
        if any("/etc/chukan" in a for a in self.argv):
            raise Failure(f"{self.name}: args name a path the check cannot map: {self.argv}")
        self.env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
        self.ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        self.local_ports: dict[str, int] = {}
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "log.txt"

    def check_ports(self) -> None:
        """The container's ports are the ones the binary listens on."""
        s = self.settings
        want = {"ops": s.get("metrics", {}).get("port")}
        if self.component == "console":
            want["http"] = s.get("console", {}).get("port")
        else:
            want["http"] = s.get("server", {}).get("port")
        if self.component == "relay":
            want["inbound"] = s.get("relay", {}).get("inbound_port")
        for name, port in want.items():
            if self.ports.get(name) != port:
                raise Failure(f"{self.name}: container port {name} is {self.ports.get(name)}, "
                              f"the settings file makes the binary listen on {port}")

    def assign_ports(self) -> None:
        self.local_ports = {name: free_port() for name in self.ports}

    def local_env(self, service_ports: dict[str, dict[str, int]]) -> dict[str, str]:
        env = dict(os.environ)
        env = {k: v for k, v in env.items() if not k.startswith("CHUKAN")}
        env.update(self.env)
        lp = self.local_ports
        env["CHUKAN__SERVER__HOST"] = env["CHUKAN__METRICS__HOST"] = "127.0.0.1"
        env["CHUKAN__METRICS__PORT"] = str(lp.get("ops", free_port()))
        env["CHUKAN__SERVER__PORT"] = str(lp["http"] if self.component != "console" and "http" in lp else free_port())
        if self.component == "console":
            env["CHUKAN__CONSOLE__HOST"] = "127.0.0.1"
            env["CHUKAN__CONSOLE__PORT"] = str(lp["http"])
        if self.component == "relay":
            env["CHUKAN__RELAY__INBOUND_HOST"] = "127.0.0.1"
            env["CHUKAN__RELAY__INBOUND_PORT"] = str(lp["inbound"])
        for key, value in flatten(self.settings).items():
            if isinstance(value, str):
                local = rewrite_service_url(value, service_ports)
                if local != value:
                    env["CHUKAN__" + key.replace(".", "__").upper()] = local
        return env

    def start(self, service_ports: dict[str, dict[str, int]]) -> None:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, env=self.local_env(service_ports), stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in text[-lines:])


def write_secret_files(name: str, spec: dict[str, Any], container: dict[str, Any], secrets: dict,
                       root: Path) -> dict[str, Path]:
    """Writes each Secret key the container mounts (projected volumes) to a file under root,
    with its test value; returns {path inside the pod: local file}."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    files: dict[str, Path] = {}
    for m in container.get("volumeMounts", []):
        for src in (volumes[m["name"]].get("projected") or {}).get("sources", []):
            sec = src.get("secret")
            if not sec:
                continue
            for item in sec["items"]:
                value = secrets.get(sec["name"], {}).get(item["key"])
                if value is None:
                    raise Failure(f"{name}: no test value for Secret {sec['name']} key {item['key']} "
                                  "(scripts/lib/deploy/local-secrets.yaml)")
                pod_path = f"{m['mountPath']}/{item['path']}"
                local = root / pod_path.lstrip("/")
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_text(str(value).rstrip("\n") + "\n", encoding="utf-8")
                local.chmod(0o400)
                files[pod_path] = local
    return files


SERVICE_URL = re.compile(rf"^(https?)://{RELEASE}-([a-z]+)(?:\.[a-z0-9.-]+)?:(\d+)(/.*)?$")


def rewrite_service_url(value: str, service_ports: dict[str, dict[str, int]]) -> str:
    """http://chukan-admin:8080/x -> http://127.0.0.1:<admin's local port for 8080>/x."""
    m = SERVICE_URL.match(value)
    if not m:
        return value
    scheme, target, port, rest = m.group(1), m.group(2), int(m.group(3)), m.group(4) or ""
    ports = service_ports.get(target)
    if ports is None or port not in ports:
        raise Failure(f"{value}: no rendered Service {RELEASE}-{target} with port {port}")
    return f"{scheme}://127.0.0.1:{ports[port]}{rest}"


def http_get(url: str, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET; status 0 when there is no HTTP answer (a refused connection,
    a failed TLS handshake)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except (OSError, ValueError):
        return 0, b""


def psql(db_url: str, sql: str, env: dict[str, str] | None = None) -> str:
    """One query's unaligned output; env adds libpq variables (PGSSLMODE, ...)."""
    return subprocess.run(["psql", db_url, "-Atqc", sql], check=True, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}).stdout.strip()


def password_matches(stored: str, user: str, password: str) -> bool:
    """Does PostgreSQL's stored verifier (SCRAM-SHA-256 or md5) belong to password?"""
    if stored.startswith("SCRAM-SHA-256$"):
        m = re.match(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$", stored)
        if not m:
            return False
        iterations, salt, stored_key = int(m.group(1)), base64.b64decode(m.group(2)), m.group(3)
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        return base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key
    if stored.startswith("md5"):
        return stored == "md5" + hashlib.md5((password + user).encode()).hexdigest()
    return False


def public_keys(binary: str, env_extra: dict[str, str], config: Path | None = None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUKAN")}
    env.update(env_extra)
    args = [binary] + (["--config", str(config)] if config else []) + ["keys", "public"]
    return json.loads(subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout)


def main(render: str, binary: str, secrets_file: str, workdir: str) -> int:
    objs = [d for d in yaml.safe_load_all(Path(render).read_text(encoding="utf-8")) if d]
    secrets = yaml.safe_load(Path(secrets_file).read_text(encoding="utf-8"))
    result = run(objs, binary, secrets, Path(workdir), Links())
    print(f"drift: migration + {result['targets']} targets ready in {result['ready_after']:.0f} s, "
          f"helm test command passed, clean SIGTERM exits")
    return 0


def run(objs: list[dict[str, Any]], binary: str, secrets: dict, work: Path, links: Links) -> dict[str, Any]:
    """The whole check on one render, reaching the servers through links; returns
    {targets, ready_after}. Raises Failure."""
    started = time.monotonic()
    configmaps = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    jobs = [o for o in objs if o["kind"] == "Job"]
    deployments = [o for o in objs if o["kind"] == "Deployment"]
    tests = [o for o in objs if o["kind"] == "Pod" and o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    if len(jobs) != 1 or not deployments or len(tests) != 1:
        raise Failure(f"expected one migration Job, Deployments and one test Pod; got {len(jobs)}, {len(deployments)}, {len(tests)}")

    migration = Workload(jobs[0], configmaps, secrets, work, binary)
    targets = [Workload(d, configmaps, secrets, work, binary) for d in deployments]
    for w in targets:
        w.check_ports()
        w.assign_ports()
    # Service "<release>-<target>": its port number -> the local port of the target port's name.
    service_ports: dict[str, dict[str, int]] = {}
    by_component = {w.component: w for w in targets}
    for name, svc in services.items():
        target = name.removeprefix(f"{RELEASE}-")
        w = by_component.get(target)
        if w:
            service_ports[target] = {p["port"]: w.local_ports[p["targetPort"]] for p in svc["spec"]["ports"]}

    # 1. The migration, as the hook Job runs it.
    mig_env = migration.local_env(service_ports)
    with open(migration.log_path, "wb") as log:
        rc = subprocess.run(migration.argv, env=mig_env, stdout=log, stderr=subprocess.STDOUT, timeout=300).returncode
    if rc != 0:
        raise Failure(f"the migration Job's command exited {rc}:\n{migration.tail()}")
    db = migration.settings["database"]
    owner_url = secrets_for(migration, "url_file", "database")
    schemas = psql(owner_url, "select count(*) from information_schema.schemata where schema_name in "
                   "('admin','code','relay','provision','inquiry','audit','notice','selfinfo','stats')",
                   links.pg_env)
    if schemas != "9":
        raise Failure(f"after the migration the database of database.url_file has {schemas} of 9 schemas")
    stored = psql(owner_url, f"select rolpassword from pg_authid where rolname = '{db['app_user']}'", links.pg_env)
    if not password_matches(stored, db["app_user"], secrets_for(migration, "app_password_file", "database")):
        raise Failure(f"the role {db['app_user']} does not have the password of database.app_password_file")
    amqp_url = secrets_for(migration, "url_file", "amqp")
    vhost = urllib.parse.unquote(amqp_url.rsplit("/", 1)[1])
    queues = links.list_queues(vhost)
    if len(queues) < 5:
        raise Failure(f"after the migration vhost {vhost} (amqp.url_file) holds {len(queues)} queues")

    # 2. Every Deployment's process, until ready.
    ready: set[str] = set()
    try:
        for w in targets:
            w.start(service_ports)
        deadline = time.monotonic() + READY_DEADLINE_S
        while len(ready) < len(targets):
            for w in targets:
                if w.name in ready:
                    continue
                if w.proc.poll() is not None:
                    raise Failure(f"{w.name} ({' '.join(w.argv[1:])}) exited {w.proc.returncode}:\n{w.tail()}")
                status, _ = http_get(f"http://127.0.0.1:{w.local_ports['ops']}/readyz")
                if status == 200:
                    ready.add(w.name)
            if time.monotonic() > deadline:
                late = [w for w in targets if w.name not in ready]
                raise Failure(f"not ready after {READY_DEADLINE_S:.0f} s: " + ", ".join(w.name for w in late)
                              + "".join(f"\n  {w.name}:\n{w.tail()}" for w in late))
            time.sleep(0.5)
        ready_after = time.monotonic() - started

        # 3. The secret files were read: the published keys are the test seeds'.
        check_keys(binary, by_component, links)
        if links.while_ready:
            links.while_ready(by_component)

        # 4. The helm test Pod's command.
        # Its mounted files (the API's CA with certificates.api) written like a target's.
        test_pod = tests[0]["spec"]
        test_files = write_secret_files("test Pod", test_pod, test_pod["containers"][0], secrets, work / "test")
        argv = [binary]
        for a in test_pod["containers"][0]["args"]:
            unmapped = a
            for pod_path, local in test_files.items():
                a = a.replace(pod_path, str(local))
                unmapped = unmapped.replace(pod_path, "")
            if "/etc/chukan" in unmapped:
                raise Failure(f"the helm test command names {unmapped}, which its Pod does not mount")
            argv.append(rewrite_service_url(a, service_ports))
        probe = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            raise Failure(f"the helm test command {argv[1:]} exited {probe.returncode}: {probe.stdout}{probe.stderr}")
    finally:
        # 5. SIGTERM: every process drains and exits 0.
        for w in targets:
            if w.proc and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        unclean = []
        for w in targets:
            if not w.proc:
                continue
            grace = int(w.settings.get("shutdown", {}).get("grace_secs", 20)) + 10
            try:
                rc = w.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                rc = "killed"
            if rc != 0:
                unclean.append(f"{w.name} exit {rc}:\n{w.tail(10)}")
    if unclean:
        raise Failure("not a clean exit on SIGTERM: " + "\n".join(unclean))
    return {"targets": len(targets), "ready_after": ready_after}


def secrets_for(w: Workload, setting: str, section: str) -> str:
    path = w.settings[section][setting]
    return Path(path).read_text(encoding="utf-8").strip()


def check_keys(binary: str, by_component: dict[str, Workload], links: Links) -> None:
    def expect(section: str, w: Workload) -> str:
        seed = secrets_for(w, "signing_key_file", section)
        return public_keys(binary, {"CHUKAN__AUDIT__SIGNING_KEY": seed})["audit"]["public_key"]

    for component, section in (("relay", "relay"), ("audit", "audit")):
        w = by_component.get(component)
        if w:
            got = public_keys(binary, {}, w.config_path)[section]
            if got["public_key"] != expect(section, w) or got["kid"] != w.settings[section]["signing_kid"]:
                raise Failure(f"{w.name}: {section}.signing_key_file was not read (public key {got})")
    admin = by_component.get("admin")
    if admin:
        want = base64.urlsafe_b64encode(base64.b64decode(expect("auth", admin))).decode().rstrip("=")
        # HTTPS when the chart gives the API a certificate (server.tls_cert_file).
        scheme = "https" if admin.settings["server"].get("tls_cert_file") else "http"
        status, body = http_get(f"{scheme}://127.0.0.1:{admin.local_ports['http']}/.well-known/jwks.json",
                                context=links.https)
        keys = json.loads(body or b"{}").get("keys", []) if status == 200 else []
        if not any(k.get("x") == want and k.get("kid") == admin.settings["auth"]["signing_kid"] for k in keys):
            raise Failure(f"admin's JWKS does not publish auth.signing_key_file's key: {status} {body[:300]!r}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(main(*sys.argv[1:]))
    except Failure as e:
        print(f"drift: FAIL {e}", file=sys.stderr)
        sys.exit(1)
