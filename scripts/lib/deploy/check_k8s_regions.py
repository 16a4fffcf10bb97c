#!/usr/bin/env python3
"""The two regions of k8s/ and the chart's values-<region>.yaml agree with each other.

    python3 scripts/lib/deploy/check_k8s_regions.py      (PyYAML; the deploy venv has it)

1. k8s/west/ must be k8s/east/ with the regions swapped, file by file. The two cells are
   built alike; what differs is only which region a name or an address range refers to.
   Swapping `east` and `west` (both ways, so a cell's references to its peer stay right) and
   the two regions' address ranges (REGION_CIDRS) in every file of one folder must give the
   other folder exactly; a difference is a change made to one region and forgotten in the
   other.
2. The cross-region shape of ADR 0006, in each region R with peer P:
   - R's own Cluster chukan-db-R is the primary of its distributed topology (replica.primary
     = replica.self = its name) and its replica.source is an external cluster at the name P's
     replica of it serves (serverAltDNSNames of chukan-db-R-replica in k8s/P);
   - R holds a replica cluster of P's cell whose replica.primary is P's own Cluster and whose
     source connects to the name P's primary serves (in P's Cluster's serverAltDNSNames),
     through a Service open to R's range only (loadBalancerSourceRanges);
   - every Cluster archives WAL to an ObjectStore of its folder that encrypts (wal and data)
     and has a daily ScheduledBackup; R's own store and R's copy of P are in R's bucket;
   - values-R.yaml's standby slot is P's cell, bound to R's replica of P (host and pods),
     with a vhost named P on R's broker; its key ids are P's; the doors' peer URLs are P's
     entry, then the slot's entry; the slot forwards to R's entry.
Exit 1 naming each problem.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "k8s"
CHART = REPO / "charts" / "chukan"
REGIONS = ("east", "west")
# Each region's address range (documentation addresses, RFC 5737): what the other region's
# policies and LoadBalancer source ranges admit.
REGION_CIDRS = {"east": "203.0.113.0/25", "west": "203.0.113.128/25"}
SWAP = {"east": "west", "west": "east", "East": "West", "West": "East", "EAST": "WEST", "WEST": "EAST",
        REGION_CIDRS["east"]: REGION_CIDRS["west"], REGION_CIDRS["west"]: REGION_CIDRS["east"]}

PROBLEMS: list[str] = []


def problem(text: str) -> None:
    PROBLEMS.append(text)


def swapped(text: str) -> str:
    return re.sub("|".join(re.escape(k) for k in SWAP), lambda m: SWAP[m.group(0)], text)


def check_mirror() -> int:
    east, west = K8S / "east", K8S / "west"
    names = sorted({p.name for p in east.glob("*.yaml")} | {p.name for p in west.glob("*.yaml")})
    for name in names:
        a, b = east / name, west / name
        if not a.is_file() or not b.is_file():
            problem(f"{name} is in only one of k8s/east and k8s/west")
            continue
        want = swapped(a.read_text(encoding="utf-8"))
        have = b.read_text(encoding="utf-8")
        if want != have:
            diff = difflib.unified_diff(
                want.splitlines(), have.splitlines(), f"k8s/east/{name} (regions swapped)", f"k8s/west/{name}", lineterm="", n=0
            )
            problem("\n".join(list(diff)[:20]))
    return len(names)


def objects(region: str) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for path in sorted((K8S / region).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def host_of(url: str) -> str:
    return urlparse(url).hostname or ""


def external(cluster: dict[str, Any], name: str) -> dict[str, Any]:
    for e in cluster["spec"].get("externalClusters") or []:
        if e["name"] == name:
            return e
    problem(f"Cluster {cluster['metadata']['name']}: no external cluster {name!r} (its replica.source)")
    return {}


def peer_service_ranges(cluster: dict[str, Any]) -> list[str]:
    ranges = []
    for svc in ((cluster["spec"].get("managed") or {}).get("services") or {}).get("additional") or []:
        spec = svc["serviceTemplate"].get("spec") or {}
        if svc.get("selectorType") == "rw" and spec.get("type") == "LoadBalancer":
            ranges += spec.get("loadBalancerSourceRanges") or []
    return ranges


def check_region(region: str, peer: str, objs: dict, peer_objs: dict) -> None:
    where = f"k8s/{region}"
    own_name, replica_name = f"chukan-db-{region}", f"chukan-db-{peer}-replica"
    own = objs.get(("Cluster", own_name))
    replica = objs.get(("Cluster", replica_name))
    peer_own = peer_objs.get(("Cluster", f"chukan-db-{peer}"))
    peer_replica_of_us = peer_objs.get(("Cluster", f"chukan-db-{region}-replica"))
    if not own or not replica or not peer_own or not peer_replica_of_us:
        problem(f"{where}: expected Clusters {own_name} and {replica_name} here and their counterparts in k8s/{peer}")
        return

    r = own["spec"].get("replica") or {}
    if r.get("primary") != own_name or r.get("self") != own_name:
        problem(f"{where} Cluster {own_name}: replica.primary and replica.self must both be {own_name} (the cell's primary)")
    src = external(own, r.get("source", ""))
    if src:
        host = (src.get("connectionParameters") or {}).get("host")
        names = (peer_replica_of_us["spec"].get("certificates") or {}).get("serverAltDNSNames") or []
        if host not in names:
            problem(f"{where} Cluster {own_name}: its source {src['name']} connects to {host!r}, not a name "
                    f"k8s/{peer}'s {peer_replica_of_us['metadata']['name']} serves ({names})")
    if REGION_CIDRS[peer] not in peer_service_ranges(own):
        problem(f"{where} Cluster {own_name}: no rw LoadBalancer open to {peer}'s range {REGION_CIDRS[peer]} "
                "(the peer's replica streams through it)")

    r = replica["spec"].get("replica") or {}
    if r.get("primary") != peer_own["metadata"]["name"]:
        problem(f"{where} Cluster {replica_name}: replica.primary must be {peer}'s own Cluster {peer_own['metadata']['name']}")
    if r.get("self") != replica_name:
        problem(f"{where} Cluster {replica_name}: replica.self must be {replica_name}")
    if (replica["spec"].get("bootstrap") or {}).get("initdb"):
        problem(f"{where} Cluster {replica_name}: a replica is bootstrapped from its source, never initdb")
    src = external(replica, r.get("source", ""))
    if src:
        host = (src.get("connectionParameters") or {}).get("host")
        names = (peer_own["spec"].get("certificates") or {}).get("serverAltDNSNames") or []
        if host not in names:
            problem(f"{where} Cluster {replica_name}: its source connects to {host!r}, not a name of "
                    f"k8s/{peer}'s primary {peer_own['metadata']['name']} ({names})")
        if (src.get("connectionParameters") or {}).get("sslmode") != "verify-full":
            problem(f"{where} Cluster {replica_name}: its source must connect with sslmode verify-full")
        if REGION_CIDRS[region] not in peer_service_ranges(peer_own):
            problem(f"k8s/{peer} Cluster {peer_own['metadata']['name']}: its rw LoadBalancer does not admit "
                    f"{region}'s range {REGION_CIDRS[region]} (where its replica streams from)")

    # Backups: an encrypting store per archiving Cluster, a daily ScheduledBackup each.
    for cluster in (own, replica):
        name = cluster["metadata"]["name"]
        archivers = [p for p in cluster["spec"].get("plugins") or [] if p.get("isWALArchiver")]
        if len(archivers) != 1:
            problem(f"{where} Cluster {name}: exactly one WAL-archiving plugin expected")
            continue
        store = objs.get(("ObjectStore", (archivers[0].get("parameters") or {}).get("barmanObjectName", "")))
        if not store:
            problem(f"{where} Cluster {name}: archives to an ObjectStore not declared in {where}")
            continue
        conf = store["spec"]["configuration"]
        for part in ("wal", "data"):
            if not (conf.get(part) or {}).get("encryption"):
                problem(f"{where} ObjectStore {store['metadata']['name']}: {part}.encryption unset")
        if not conf.get("destinationPath", "").startswith(f"s3://chukan-{region}-backups/"):
            problem(f"{where} ObjectStore {store['metadata']['name']}: must write to this region's bucket chukan-{region}-backups")
        if not conf.get("endpointURL", "").startswith("https://"):
            problem(f"{where} ObjectStore {store['metadata']['name']}: endpoint must be HTTPS")
        if not any(o["spec"]["cluster"]["name"] == name for (k, _), o in objs.items() if k == "ScheduledBackup"):
            problem(f"{where} Cluster {name}: no ScheduledBackup")

    # The peer cell's vhost on this region's broker (the standby slot's).
    if not any(k == "Vhost" and o["spec"]["name"] == peer for (k, _), o in objs.items()):
        problem(f"{where}: no Vhost {peer!r} for the standby slot on this region's broker")

    check_values(region, peer, replica_name)


def load_values(region: str) -> dict[str, Any]:
    return yaml.safe_load((CHART / f"values-{region}.yaml").read_text(encoding="utf-8")) or {}


def check_values(region: str, peer: str, replica_name: str) -> None:
    where = f"charts/chukan/values-{region}.yaml"
    v, pv = load_values(region), load_values(peer)
    slot = v.get("standbySlot") or {}
    if not slot.get("enabled") or slot.get("cell") != peer:
        problem(f"{where}: standbySlot must be enabled with cell {peer!r} (the peer cell)")
        return
    if slot.get("replicas", 0) != 0:
        problem(f"{where}: standbySlot.replicas must be 0 (scaled up by a failover, not by helm)")
    if (slot.get("database") or {}).get("host") != f"{replica_name}-rw.chukan-data.svc":
        problem(f"{where}: standbySlot.database.host must be {replica_name}-rw.chukan-data.svc (the local replica of {peer})")
    pods = ((((slot.get("networkPolicy") or {}).get("database") or {}).get("podSelector") or {}).get("matchLabels") or {})
    if pods.get("cnpg.io/cluster") != replica_name:
        problem(f"{where}: standbySlot.networkPolicy.database must select cnpg.io/cluster={replica_name}")
    for section in ("auth", "relay", "audit"):
        if (slot.get(section) or {}).get("signingKid") != (pv.get(section) or {}).get("signingKid"):
            problem(f"{where}: standbySlot.{section}.signingKid must be {peer}'s {section}.signingKid (the cell's own key)")
    urls = (v.get("cells") or {}).get("peerApiUrls") or []
    want = [(pv.get("ingress") or {}).get("host"), slot.get("ingressHost")]
    if [host_of(u) for u in urls] != want:
        problem(f"{where}: cells.peerApiUrls must be {peer}'s entry then the slot's entry (hosts {want}), not {urls}")
    if [host_of(u) for u in slot.get("peerApiUrls") or []] != [(v.get("ingress") or {}).get("host")]:
        problem(f"{where}: standbySlot.peerApiUrls must be this region's entry (the slot's peer is {region})")
    if (slot.get("relay") or {}).get("inboundPublicUrl") == (pv.get("relay") or {}).get("inboundPublicUrl"):
        problem(f"{where}: the slot's relay door must differ from {peer}'s own (the NWS's second door)")


def main() -> int:
    files = check_mirror()
    objs = {r: objects(r) for r in REGIONS}
    for region, peer in (("east", "west"), ("west", "east")):
        check_region(region, peer, objs[region], objs[peer])
    for p in PROBLEMS:
        print(f"FAIL {p}")
    print(f"check_k8s_regions: {files} files, {'ok' if not PROBLEMS else f'{len(PROBLEMS)} problem(s)'}")
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())
