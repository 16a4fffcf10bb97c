#!/usr/bin/env python3
"""The drift check over TLS: the chart's TLS settings really configure the binary.

    drift_tls.py VALUES BIN SECRETS FIXTURE WORKDIR

VALUES is charts/chukan/ci/local-tls-values.yaml (verify-full towards PostgreSQL and RabbitMQ,
the API serving HTTPS, relay's inbound door with mutual TLS); BIN the chukan binary; SECRETS
scripts/lib/deploy/local-secrets.yaml; FIXTURE crates/testkit's tls-fixture binary; WORKDIR
an empty temporary folder.

The machine's PostgreSQL and RabbitMQ speak plaintext, so the fixture starts servers of its
own with a throw-away CA: a PostgreSQL cluster whose pg_hba.conf has `hostssl ... trust` and
`hostnossl ... reject`, and a RabbitMQ node whose only listener is TLS, both with a server
certificate for `localhost`. This script then

  - renders the chart with VALUES and database.port = the cluster's port, and fills the
    Secrets VALUES names: the CA's certificate for every caSecret, certificates of that CA
    for the API (certificates.api), relay's inbound door and relay's NWS client, the owner
    and AMQP URLs (postgres://postgres@localhost:<port>/..., amqps://...@localhost:<port>/...);
  - runs drift.py's whole check on that render (the migration Job, every Deployment ready,
    secret files read, the helm test command, clean SIGTERM exits), and while every process
    is ready also checks that TLS is what they use:
      * every session of the application role in pg_stat_ssl has ssl = true, and a
        plaintext connection to the cluster is refused;
      * the RabbitMQ port answers a TLS client (verify-full, `localhost`) and gives no AMQP
        answer to a plaintext one;
      * relay's inbound door answers HTTP over TLS with the NWS's client certificate and
        refuses a client without one; the API (admin) answers HTTPS only;
      * every certificate file a process's settings name is exported as a parsed, unexpired
        certificate (chukan_tls_certificate_expiry_timestamp_seconds);
  - stops the fixture (closing its stdin), which stops both servers and removes their files.

Prints one line: `drift-tls: migration + N targets ready over TLS in S s, ...`.
"""
from __future__ import annotations

import json
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

import drift
from drift import Failure, Links, Workload, http_get, psql
from render import load_values, render

CHART = Path(__file__).resolve().parents[3] / "charts" / "chukan"
# The fixture's vhost: the one in the AMQP URL the check writes.
VHOST = "chukan-deploycheck"
FIXTURE_START_S = 120
# Settings keys naming certificate files (crates/tls/src/expiry.rs chukan_files).
CERT_SETTINGS = (
    "server.tls_cert_file", "relay.inbound_tls_cert_file", "relay.inbound_client_ca_file",
    "relay.nws_ca_file", "relay.nws_client_cert_file", "auth.jwks_ca_file", "console.api_ca_file",
    "database.ca_file", "database.client_cert_file", "amqp.ca_file", "amqp.client_cert_file",
)
EXPIRY_METRIC = "chukan_tls_certificate_expiry_timestamp_seconds"


class Fixture:
    """The tls-fixture process: its JSON line of ports and files, and its stdin requests."""

    def __init__(self, binary: str, log: Path):
        self.log = log
        self.proc = subprocess.Popen([binary, "--vhost", VHOST], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(log, "wb"), text=True)

    def started(self) -> dict[str, Any]:
        """Its JSON line, once both servers run."""
        return self.read_line(FIXTURE_START_S, "start PostgreSQL and RabbitMQ")

    def read_line(self, timeout: float, what: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise Failure(f"tls-fixture did not {what} within {timeout:.0f} s:\n"
                          + self.log.read_text(encoding="utf-8", errors="replace")[-3000:])
        return json.loads(line)

    def queues(self, vhost: str) -> list[str]:
        """The queue names of a vhost of the fixture's RabbitMQ node (its rabbitmqctl)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"queues {vhost}\n")
        self.proc.stdin.flush()
        answer = self.read_line(60, "list the queues")
        if "queues" not in answer:
            raise Failure(f"tls-fixture: {answer}")
        return answer["queues"]

    def stop(self) -> None:
        """EOF on its stdin stops it (SIGTERM too, if it does not go)."""
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def tls_context(ca_file: str, client: tuple[str, str] | None = None) -> ssl.SSLContext:
    """A verify-full client context trusting ca_file only, with an optional client certificate."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if client:
        ctx.load_cert_chain(*client)
    return ctx


def tls_http_get(port: int, ctx: ssl.SSLContext | None) -> bytes:
    """The first bytes of the answer to `GET /` on 127.0.0.1:port, over TLS with ctx (server
    name `localhost`) or in plaintext with ctx None; b"" when the server closes, fails the
    handshake or resets the connection instead of answering."""
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            if ctx is None:
                raw.sendall(request)
                return raw.recv(64)
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(request)
                return tls.recv(64)
    except (OSError, ssl.SSLError):
        return b""


def check_tls_links(fx: dict[str, Any], pg_admin_url: str, pg_env: dict[str, str], app_user: str,
                    by_component: dict[str, Workload], proof: dict[str, Any]) -> None:
    """While every process is ready: their links are TLS, and plaintext gets nowhere."""
    # PostgreSQL: every session of the application role is encrypted...
    rows = psql(pg_admin_url, "select count(*), count(*) filter (where s.ssl) from pg_stat_activity a "
                f"join pg_stat_ssl s using (pid) where a.usename = '{app_user}'", pg_env)
    sessions, encrypted = (int(n) for n in rows.split("|"))
    if sessions == 0 or encrypted != sessions:
        raise Failure(f"pg_stat_ssl: {encrypted} of {sessions} sessions of {app_user} use TLS")
    proof["pg_sessions"] = sessions
    # ... and plaintext is refused (pg_hba.conf: hostnossl ... reject).
    plain = subprocess.run(["psql", pg_admin_url, "-Atqc", "select 1"], capture_output=True, text=True,
                           env={**os.environ, "PGSSLMODE": "disable"})
    if plain.returncode == 0 or "no encryption" not in plain.stderr:
        raise Failure(f"a plaintext connection to the TLS cluster was not refused: {plain.stderr.strip()}")

    # RabbitMQ: a verify-full TLS client gets through; a plaintext AMQP greeting gets no
    # Connection.Start (a method frame starts with byte 1).
    ctx = tls_context(fx["ca_file"])
    with socket.create_connection(("127.0.0.1", fx["amqp_port"]), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"AMQP\x00\x00\x09\x01")
            if not tls.recv(1).startswith(b"\x01"):
                raise Failure("RabbitMQ gave no AMQP Connection.Start over TLS")
    try:
        with socket.create_connection(("127.0.0.1", fx["amqp_port"]), timeout=5) as raw:
            raw.sendall(b"AMQP\x00\x00\x09\x01")
            answer = raw.recv(1)
    except OSError:
        answer = b""
    if answer.startswith(b"\x01"):
        raise Failure("RabbitMQ's TLS port answered a plaintext AMQP client")

    # relay's inbound door: mutual TLS.
    relay = by_component.get("relay")
    if relay:
        port = relay.local_ports["inbound"]
        with_cert = tls_http_get(port, tls_context(fx["ca_file"], (fx["client_cert_file"], fx["client_key_file"])))
        if not with_cert.startswith(b"HTTP/1.1 "):
            raise Failure(f"relay's inbound door did not answer HTTPS with the NWS's client certificate: {with_cert!r}")
        without = tls_http_get(port, tls_context(fx["ca_file"]))
        if without.startswith(b"HTTP/"):
            raise Failure(f"relay's inbound door answered a client without a certificate: {without!r}")
        proof["links"].append("relay inbound mTLS")

    # The API (certificates.api): admin answers HTTPS (its JWKS was fetched so by check_keys)
    # and nothing in plaintext.
    admin = by_component.get("admin")
    if admin and admin.settings["server"].get("tls_cert_file"):
        if tls_http_get(admin.local_ports["http"], None).startswith(b"HTTP/"):
            raise Failure("admin's API port answered plaintext HTTP although it serves TLS")
        proof["links"].append("API HTTPS")

    # Every certificate file named in a process's settings was read and parsed: its expiry
    # gauge is in the future (0 = unreadable; absent = not configured). The console too: its
    # process exports the expiry of console.api_ca_file.
    now = time.time()
    for w in by_component.values():
        flat = drift.flatten(w.settings)
        want = [k for k in CERT_SETTINGS if flat.get(k)]
        status, body = http_get(f"http://127.0.0.1:{w.local_ports['ops']}/metrics")
        text = body.decode("utf-8", "replace") if status == 200 else ""
        for key in want:
            m = re.search(rf'^{EXPIRY_METRIC}{{certificate="{re.escape(key)}"}} (\S+)$', text, re.M)
            if not m or float(m.group(1)) <= now:
                raise Failure(f"{w.name}: {key} is not exported as a valid certificate "
                              f"({EXPIRY_METRIC}: {m.group(1) if m else 'absent'})")
            proof["cert_files"] += 1


def main(values_file: str, binary: str, secrets_file: str, fixture_bin: str, workdir: str) -> int:
    started = time.monotonic()
    work = Path(workdir)
    fixture = Fixture(fixture_bin, work / "tls-fixture.log")
    try:
        fx = fixture.started()
        fixture_s = time.monotonic() - started
        pg_port, amqp_port = fx["pg_port"], fx["amqp_port"]

        # The chart with the TLS values, pointed at the cluster's port.
        values = load_values([values_file])
        values["database"]["port"] = pg_port
        stream, _ = render(CHART, values)
        (work / "render.yaml").write_text(stream, encoding="utf-8")
        objs = [d for d in yaml.safe_load_all(stream) if d]
        db = values["database"]

        # libpq with verify-full against the fixture's CA, as the check's own client.
        pg_env = {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": fx["ca_file"]}
        pg_admin_url = f"postgres://postgres@localhost:{pg_port}/postgres"
        psql(pg_admin_url, f"create database {db['name']}", pg_env)

        # The Secrets of VALUES: local-secrets.yaml's test values, the URLs of the fixture's
        # servers (through `localhost`, the name in their certificates) and its certificates.
        base = yaml.safe_load(Path(secrets_file).read_text(encoding="utf-8"))["chukan-deploycheck"]
        pem = {k: Path(fx[k]).read_text(encoding="utf-8") for k in fx if k.endswith("_file")}
        ca = pem["ca_file"]
        secrets = {
            "chukan-deploycheck": {
                **base,
                "owner-url": f"postgres://postgres@localhost:{pg_port}/{db['name']}",
                "amqp-url": f"amqps://guest:guest@localhost:{amqp_port}/{VHOST}",
            },
            "chukan-deploycheck-ca": {"ca.crt": ca},
            "chukan-deploycheck-api-tls": {"tls.crt": pem["api_cert_file"], "tls.key": pem["api_key_file"], "ca.crt": ca},
            "chukan-deploycheck-relay-inbound-tls": {
                "tls.crt": pem["relay_inbound_cert_file"], "tls.key": pem["relay_inbound_key_file"], "ca.crt": ca},
            "chukan-deploycheck-nws-client": {
                "tls.crt": pem["client_cert_file"], "tls.key": pem["client_key_file"], "ca.crt": ca},
        }

        proof: dict[str, Any] = {"links": ["PostgreSQL verify-full", "RabbitMQ amqps verify-full"], "cert_files": 0}
        links = Links(
            pg_env=pg_env,
            list_queues=fixture.queues,
            https=tls_context(fx["ca_file"]),
            while_ready=lambda by_component: check_tls_links(fx, pg_admin_url, pg_env, db["appUser"],
                                                             by_component, proof),
        )
        result = drift.run(objs, binary, secrets, work / "run", links)
    finally:
        fixture.stop()
    print(f"drift-tls: migration + {result['targets']} targets ready over TLS in {result['ready_after']:.0f} s "
          f"(fixture up in {fixture_s:.0f} s; {', '.join(proof['links'])}; {proof['pg_sessions']} app sessions "
          f"all in pg_stat_ssl, plaintext refused; {proof['cert_files']} certificate files read), "
          f"{time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(main(*sys.argv[1:]))
    except Failure as e:
        print(f"drift-tls: FAIL {e}", file=sys.stderr)
        sys.exit(1)
