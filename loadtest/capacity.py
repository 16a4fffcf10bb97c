#!/usr/bin/env python3
"""National scale on paper (issue 17): size the east and west cells from a run-all report.

    loadtest/capacity.py                         # newest clean loadtest/reports/*.json
    loadtest/capacity.py REPORT.json --entry-bytes 760 --growth 3
    loadtest/capacity.py --list                  # every input: value, unit, where it comes from
    loadtest/capacity.py --json                  # the results as JSON
    loadtest/capacity.py --measure-row-bytes postgres://postgres@127.0.0.1:5432

Every input has a default with its source (a document, the seed, or "assumption") and a
flag of the same name (--annual-inquiries 4e7). Measured inputs are read from the report
when it has them (the newer load tools add a `spend` object per point, with CPU, commits
and bus deliveries per exchange, and run-all a `ceilings` point); missing ones keep their
defaults, and the table of inputs says which value came from where. docs/capacity.md
explains the model. Python 3 standard library only.
"""

import argparse
import glob
import json
import os
import signal
import subprocess
import sys

KIB = 1024

# --- Measured inputs: (name, default, unit, source of the default) --------------------------
# Overridden by the report when it carries the figure, and by a flag above both.
MEASURED = [
    ("inq_cpu_ours_s", 0.0045, "CPU-s/exchange",
     "benchmarks.md #4: at ~270/s PostgreSQL 82 %, chukan 50 %, RabbitMQ 27 % of 2 cores, "
     "less nws-sim's database (7.8 of 17.4 commits)"),
    ("inq_cpu_nws_s", 0.0023, "CPU-s/exchange",
     "benchmarks.md #4: nws-sim 25 % + its database; shown, not sized (the NWS is not ours)"),
    ("acq_cpu_ours_s", 0.0029, "CPU-s/acquisition",
     "benchmarks.md #2: 88 % of 2 cores at 400/s, less nws-sim's third"),
    ("inq_commits_chukan", 9.6, "commits/exchange", "benchmarks.md #4 (pg_stat_database)"),
    ("inq_commits_nws", 7.8, "commits/exchange", "benchmarks.md #4; not ours, shown"),
    ("acq_commits_chukan", 5.0, "commits/acquisition",
     "benchmarks.md #2: 3 transactions + 2 outbox rounds"),
    ("pg_commits_s", 18829.0, "commits/s", "benchmarks.md #2: pgbench single-insert, 2 cores"),
    ("echo_msgs_s", 16707.0, "msg/s", "benchmarks.md #4: raw lapin echo, one queue"),
    ("copy_rows_s", 87476.0, "rows/s", "benchmarks.md #3: COPY 2 streams, 200k rows"),
    ("replica_apply_rows_s", 44468.0, "rows/s", "benchmarks.md #3: 1 M apply only, 2 cores"),
    ("replica_cpu_s_per_row", None, "CPU-s/row",
     "derived: machine cores x busy share / apply rows/s"),
    ("replica_entry_bytes_measured", 763.0, "bytes", "benchmarks.md #3: file bytes per entry"),
    ("upload_mb_s", 65.0, "MB/s", "benchmarks.md #3: upload parse, one stream"),
    ("audit_append_rec_s", 15000.0, "records/s", "benchmarks.md #5: 1 M backlog drain"),
    ("verify_rec_s", 216000.0, "records/s", "benchmarks.md #5 after issue 11, one log"),
    ("verify_bytes_per_record", 158.0, "bytes", "benchmarks.md #5: verify RSS 158 MB at 1 M "
     "(the log's nodes are held in memory)"),
    ("machine_cores", 2.0, "cores", "the benchmark machine"),
]

# --- Assumptions: (name, default, unit, source) ------------------------------------------
ASSUMED = [
    # Volume
    ("annual_inquiries", 30.29e6, "/year", "DOMAIN §9: inquiries by local governments, FY2022"),
    ("growth", 2.0, "x", "assumption: 1.49 M (FY2017) -> 30.29 M (FY2022); 38.5 % of "
     "procedures still unused (Board of Audit 2024)"),
    ("provisions_per_inquiry", 2.0, "x", "assumption: answers given by platform organisations "
     "(other municipalities' inquiries + national bodies') per inquiry they make"),
    ("annual_acquisitions", 10e6, "/year", "assumption: ~5.3 M moves between municipalities, "
     "~0.8 M births, ~0.5 M arrivals from abroad, x1.5 for prefectures and unions"),
    # Peaks
    ("month_share", 0.15, "of year", "assumption: June-July tax/benefit season (uniform 0.083)"),
    ("acq_month_share", 0.16, "of year", "assumption: March-April moving season"),
    ("day_share", 0.10, "of month", "assumption: 2x an average weekday (~21 a month)"),
    ("hour_share", 0.20, "of day", "assumption: bulk files and the 08:00 release of held "
     "traffic; uniform over 13 service hours (DOMAIN §7) is 0.077"),
    ("peak_minute", 3.0, "x hour mean", "assumption"),
    ("headroom", 2.0, "x", "assumption: <= 50 % busy at the peak: TLS on every link (the "
     "benchmarks run plain loopback), +-25 % run-to-run spread, a lost zone"),
    # Exchanges
    ("end_share", 0.5, "of an exchange", "assumption: each end of an exchange costs half "
     "of the measured one (both ends ran in one chukan)"),
    ("audit_per_inquiry", 2.0, "records", "benchmarks.md #4: the inquirer's log, 2 per inquiry"),
    ("audit_per_provision", 1.0, "records", "benchmarks.md #4: the provider's log"),
    ("msgs_per_exchange", 10.0, "messages", "docs: 4 exchange hops + 3 audit.record + 3 "
     "stats.exchange"),
    ("cpu_pg_share", 0.37, "of ours", "benchmarks.md #4: PostgreSQL 45 of 122 % (chukan's part)"),
    ("cpu_mq_share", 0.22, "of ours", "benchmarks.md #4: RabbitMQ 27 of 122 %"),
    # Night
    ("entry_bytes", 5120.0, "bytes", "seed §5.1 worked example: 5 KB records"),
    ("cap_fill", 1.0, "of cap", "brief: every organisation at its daily cap"),
    ("window_h", 10.0, "hours", "defaults.toml nightly_batch_at 22:00; batch_health "
     "deadline 08:00"),
    ("upload_hours", 14.0, "hours", "DOMAIN §5 upload slots 08:00-22:00"),
    ("replica_busy_share", 0.87, "of machine", "benchmarks.md #3: both cores 87 % busy "
     "during the 3.8 M apply"),
    ("replica_bytes_share", 0.26, "of apply CPU", "benchmarks.md #3: batch 48 s of 182 s "
     "(parse, seal: grows with bytes); PostgreSQL's share grows with rows"),
    ("replica_large_derate", 0.66, "x", "benchmarks.md #3's 3.8 M apply (34,007 rows/s) vs "
     "run-all's 200k point (51,885, 581db8c): tables outgrowing the cache"),
    ("wal_factor", 2.0, "x", "assumption: WAL bytes per byte of table and index written "
     "(full-page images after checkpoints)"),
    # Storage
    ("row_bytes_fixed", 340.0, "bytes", "--measure-row-bytes: provision.replicas with its "
     "indexes = fixed + per_byte x entry (774 B at 760, 3,259 B at 5,120)"),
    ("row_bytes_per_entry_byte", 0.570, "x", "--measure-row-bytes (sealed = 0.40 of the entry, "
     "as 301 of 760 in benchmarks.md #3)"),
    ("stock_days_of_cap", 1.0, "days", "assumption: an organisation's replicas = one day's byte "
     "cap (the cap lets a major revision re-register everything in a night, DOMAIN §4-5)"),
    ("versions_factor", 1.0, "x", "assumption: old and new versions coexist only around a "
     "revision (x2 then)"),
    ("audit_record_bytes", 1137.0, "bytes", "--measure-row-bytes: audit.records + 6 indexes"),
    ("audit_node_bytes", 302.0, "bytes/record", "--measure-row-bytes: audit.nodes, 2 rows "
     "per record"),
    ("tree_head_bytes", 241.0, "bytes", "--measure-row-bytes: audit.tree_heads row + key"),
    ("head_interval_s", 10.0, "s", "docs/audit.md tree_head_interval_secs"),
    ("head_share", 0.5, "heads/record", "assumption: a small log signs a head for most "
     "10-s windows it grew in; half its records share a window"),
    ("service_hours_year", 4265.0, "hours", "DOMAIN §7: 245 weekdays x 13 h + 120 other days "
     "x 9 h"),
    ("ed25519_verify_s", 46e-6, "s", "ed25519-dalek README: 46 us per verification"),
    ("verify_bytes_per_head", 250.0, "bytes", "assumption: a loaded head row and its root "
     "(verify holds every head of the log)"),
    ("retention_years", 7.0, "years", "docs/audit.md, audit.retention_years"),
    ("exchange_row_bytes", 1500.0, "bytes/end", "assumption: inquiry or provisions row with "
     "its sealed result, inbox rows; kept as long as the audit log (no purge exists yet)"),
    # Backup
    ("backup_mb_s", 100.0, "MB/s/process", "assumption: pgBackRest compress + encrypt of "
     "random (sealed) bytes, one core"),
    ("backup_processes", 4.0, "processes", "assumption: pgBackRest process-max"),
    ("wal_replay_mb_s", 150.0, "MB/s", "assumption: one startup process"),
    ("restore_fixed_s", 10.0, "s", "docs/backup.md: restore + start of a tiny cluster 4.5-7 s"),
    ("verify_parallel", 8.0, "logs at once", "assumption: what a parallel verify could run"),
    # Organisations
    ("unions", 60.0, "organisations", "assumption: 47 後期高齢者医療広域連合 + other unions"),
    ("union_population_factor", 1.2, "x population", "assumption: the 47 広域連合 cover "
     "everyone; other unions overlap"),
]

# Municipalities (2020 census, rounded; DOMAIN §1 ~1,741). Cities of 1 M and more by name
# (the record cap is the population at 2 M and more: quota.rs); the others in bands,
# split between the cells by the east's share of them. Replace with the real list:
# --orgs-csv FILE (cell,kind,population[,count]).
BIG_CITIES = [  # (cell, name, population)
    ("east", "Yokohama", 3.78e6), ("west", "Osaka", 2.75e6), ("west", "Nagoya", 2.33e6),
    ("east", "Sapporo", 1.97e6), ("west", "Fukuoka", 1.61e6), ("east", "Kawasaki", 1.54e6),
    ("west", "Kobe", 1.53e6), ("west", "Kyoto", 1.46e6), ("east", "Saitama", 1.32e6),
    ("west", "Hiroshima", 1.20e6), ("east", "Sendai", 1.10e6),
]
BANDS = [  # (municipalities, population) nationally, below 1 M
    (27, 17.5e6), (86, 27.0e6), (152, 22.0e6), (247, 18.0e6),
    (420, 14.0e6), (260, 3.9e6), (255, 1.85e6), (283, 0.7e6),
]
# East = Hokkaido, Tohoku, Kanto, Niigata, Yamanashi, Nagano, Shizuoka (assumption: the
# Fossa Magna line): 18 prefectures, 66.2 M residents, 891 municipalities.
CELLS = {
    "east": {"prefectures": 18, "population": 66.2e6, "municipalities": 891},
    "west": {"prefectures": 29, "population": 59.9e6, "municipalities": 850},
}
KIND_SHARE = {"municipality": 1.0, "prefecture": 0.1, "union": 0.3}  # quota.rs byte shares


def organisations(p, csv_path=None):
    """Per cell: a list of (kind, population, count) groups of identical organisations."""
    if csv_path:
        cells = {}
        with open(csv_path, encoding="utf-8") as f:
            for line in f:
                parts = [x.strip() for x in line.split(",")]
                if not parts[0] or parts[0].startswith("#") or parts[0] == "cell":
                    continue
                count = float(parts[3]) if len(parts) > 3 else 1.0
                cells.setdefault(parts[0], []).append((parts[1], float(parts[2]), count))
        return cells
    cells = {}
    big = {c: sum(pop for cc, _, pop in BIG_CITIES if cc == c) for c in CELLS}
    rest_count = sum(n for n, _ in BANDS)
    for cell, info in CELLS.items():
        n_big = sum(1 for cc, _, _ in BIG_CITIES if cc == cell)
        pop_share = (info["population"] - big[cell]) / sum(
            i["population"] - big[c] for c, i in CELLS.items())
        count_share = (info["municipalities"] - n_big) / rest_count
        groups = [("municipality", pop, 1.0) for cc, _, pop in BIG_CITIES if cc == cell]
        for n, pop in BANDS:
            count = n * count_share
            groups.append(("municipality", pop * pop_share / count, count))
        groups.append(("prefecture", info["population"] / info["prefectures"],
                       float(info["prefectures"])))
        cell_share = info["population"] / sum(i["population"] for i in CELLS.values())
        unions = p["unions"] * cell_share
        groups.append(("union", info["population"] * p["union_population_factor"] / unions,
                       unions))
        cells[cell] = groups
    return cells


def daily_cap(kind, population):
    """quota.rs DailyQuota::for_org: (records, bytes)."""
    records = population if population >= 2_000_000 else 2_000_000
    return records, population * KIND_SHARE[kind] * 10 * KIB


# --- Reading the report ---------------------------------------------------------------------

def leaves(obj, prefix=""):
    """Every numeric leaf of a JSON document as (dotted path, value)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix, float(obj)


def first(obj, want, lo=None, hi=None, prefix=""):
    """The first numeric leaf whose lower-cased path satisfies `want` (and lies in [lo, hi])."""
    for path, v in leaves(obj, prefix):
        if want(path.lower()) and (lo is None or v >= lo) and (hi is None or v <= hi):
            return path, v
    return None


def from_report(report):
    """Measured inputs the report carries: {name: (value, "report: path")}."""
    pts = report.get("points", {})
    found = {}

    def take(name, point, want, lo=None, hi=None):
        if point in pts:
            hit = first(pts[point], want, lo, hi, prefix=f"points.{point}")
            if hit:
                found[name] = (hit[1], "report: " + hit[0])

    inq, acq = "inquiry_200", "acquisitions_200"

    def cpu(name, point, who, units, lo, hi):
        """CPU-seconds per unit of `who` (ours, nws): the report's total for `who` when it
        gives one, else the sum of its process groups. Bounded so that a run's total
        CPU-seconds is never read as a per-unit figure."""
        if not isinstance(pts.get(point, {}).get("cpu"), dict):
            return
        per_unit, plain = [], []
        for path, v in leaves(pts[point]["cpu"], f"points.{point}.cpu"):
            parts = path.lower().split(".")
            at = next((i for i, c in enumerate(parts) if c.startswith(who)), None)
            if at is None:
                continue
            # Whole: `who` is the leaf itself, or its only child is a total.
            whole = at == len(parts) - 1 or parts[at + 1:] == ["total"]
            if any(u in path.lower() for u in units):
                per_unit.append((path, v, whole, ".".join(path.split(".")[:at + 1])))
            elif whole:
                plain.append((path, v))
        picks = [(p_, v) for p_, v, whole, _ in per_unit if whole] or (
            [(per_unit[0][3] + ".*", sum(v for _, v, _, top in per_unit
                                         if top == per_unit[0][3]))] if per_unit else plain)
        # A run's total CPU-seconds per group, divided by what the run did.
        done = pts[point].get("completed") or pts[point].get("entries")
        for path, v in picks:
            if lo <= v <= hi:
                found[name] = (v, "report: " + path)
                return
            if done and lo <= v / done <= hi:
                found[name] = (v / done, f"report: {path} / {done:.0f} done")
                return

    per_op = ("per_exchange", "per_op", "per_request", "per_inquiry", "per_acquisition")
    cpu("inq_cpu_ours_s", inq, "ours", per_op, 1e-5, 0.5)
    cpu("inq_cpu_nws_s", inq, "nws", per_op, 1e-5, 0.5)
    cpu("acq_cpu_ours_s", acq, "ours", per_op, 1e-5, 0.5)
    cpu("replica_cpu_s_per_row", "replica_200k", "ours", ("per_row", "per_record", "per_entry"),
        1e-7, 1e-2)
    take("inq_commits_chukan", inq, lambda p: "commits_per_exchange" in p and "chukan" in p)
    take("inq_commits_nws", inq, lambda p: "commits_per_exchange" in p and "nws" in p)
    take("acq_commits_chukan", acq, lambda p: "commits_per_exchange" in p and "chukan" in p)
    take("echo_msgs_s", inq, lambda p: "echo" in p and ("messages_per_s" in p
                                                       or "msgs_per_s" in p))
    take("replica_apply_rows_s", "replica_200k", lambda p: "records_per_s_apply_only" in p)
    take("copy_rows_s", "replica_200k", lambda p: "copy" in p and "rows_per_s" in p)
    take("audit_append_rec_s", "audit_200k", lambda p: p.endswith("append.records_per_second"))
    rep = pts.get("replica_200k", {})
    if rep.get("entries") and rep.get("file_bytes"):
        found["replica_entry_bytes_measured"] = (
            rep["file_bytes"] / rep["entries"], "report: file_bytes / entries")
        if rep.get("ours", {}).get("upload_s"):
            found["upload_mb_s"] = (rep["file_bytes"] / rep["ours"]["upload_s"] / 1e6,
                                    "report: file_bytes / ours.upload_s")
    aud = pts.get("audit_200k", {})
    if aud.get("verify_s") and aud.get("proofs", {}).get("tree_size"):
        found["verify_rec_s"] = (aud["proofs"]["tree_size"] / aud["verify_s"],
                                 "report: proofs.tree_size / verify_s")
    # The ceilings point (newer run-all) wins over the figures measured beside a benchmark.
    take("pg_commits_s", "ceilings", lambda p: "pgbench" in p and ("tps" in p or "per_s" in p))
    take("echo_msgs_s", "ceilings", lambda p: "echo" in p and "per_s" in p)
    # COPY rows/s sizes restore-org, which copies replica-shaped rows: the replica point's
    # COPY of the same rows wins over the ceilings' narrow pgbench rows (14x faster here).
    if "copy_rows_s" not in found:
        take("copy_rows_s", "ceilings", lambda p: "copy" in p and "rows" in p and "per_s" in p)
    # The `spend` object of the newer load tools (loadtest/src/spend.rs) by its exact paths;
    # they win over the guesses above. CPU there is in milliseconds per exchange.
    for name, point, path, scale in (
        ("inq_cpu_ours_s", inq, "spend.cpu_ms_per_exchange.ours", 1e-3),
        ("inq_cpu_nws_s", inq, "spend.cpu_ms_per_exchange.nws_sim_share", 1e-3),
        ("acq_cpu_ours_s", acq, "spend.cpu_ms_per_exchange.ours", 1e-3),
        ("inq_commits_chukan", inq, "spend.databases.chukan.commits_per_exchange", 1),
        ("inq_commits_nws", inq, "spend.databases.nws_sim.commits_per_exchange", 1),
        ("acq_commits_chukan", acq, "spend.databases.chukan.commits_per_exchange", 1),
        ("msgs_per_exchange", inq, "spend.broker_deliveries_per_exchange", 1),
    ):
        v = pts.get(point, {})
        for key in path.split("."):
            v = v.get(key) if isinstance(v, dict) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            found[name] = (v * scale, f"report: points.{point}.{path}"
                           + (" / 1000" if scale != 1 else ""))
    machine = report.get("machine", "")
    if machine.split(" ")[0].isdigit():
        found["machine_cores"] = (float(machine.split(" ")[0]), "report: machine")
    return found


def newest_report(root):
    """The newest report by its `at`, preferring clean ones: a dirty report was run from a
    tree that differs from its commit (e.g. run-all copied into an older tree)."""
    reports = []
    for path in glob.glob(os.path.join(root, "loadtest", "reports", "*.json")):
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        reports.append((not doc.get("dirty", False), doc.get("at", ""), path))
    return max(reports)[2] if reports else None


# --- The model ------------------------------------------------------------------------------

def size(p, cells):
    """Every figure of the sizing table, per cell."""
    total_weight = sum(KIND_SHARE[k] * pop * n for g in cells.values() for k, pop, n in g)
    inquiries = p["annual_inquiries"] * p["growth"]
    provisions = inquiries * p["provisions_per_inquiry"]
    acquisitions = p["annual_acquisitions"] * p["growth"]
    peak_s = p["month_share"] * p["day_share"] * p["hour_share"] / 3600
    acq_peak_s = p["acq_month_share"] * p["day_share"] * p["hour_share"] / 3600

    # CPU per replica row at the measured entry size, then at the modelled one: the batch's
    # share grows with bytes, PostgreSQL's with rows; large tables cost more per row.
    cpu_row_measured = p["replica_cpu_s_per_row"] or (
        p["machine_cores"] * p["replica_busy_share"] / p["replica_apply_rows_s"])
    size_factor = (1 - p["replica_bytes_share"]) + p["replica_bytes_share"] * (
        p["entry_bytes"] / p["replica_entry_bytes_measured"])
    cpu_row = cpu_row_measured * size_factor / p["replica_large_derate"]
    # As built: one batch per cell (lease), organisations one after another, two chunk
    # transactions in flight: about the measured machine's rate, whatever the cores.
    as_built_rows_s = p["replica_apply_rows_s"] * p["replica_large_derate"] / size_factor
    row_bytes = p["row_bytes_fixed"] + p["row_bytes_per_entry_byte"] * p["entry_bytes"]
    years = p["retention_years"]
    head_slots_year = p["service_hours_year"] * 3600 / p["head_interval_s"]

    out = {}
    for cell, groups in cells.items():
        weight = sum(KIND_SHARE[k] * pop * n for k, pop, n in groups)
        share = weight / total_weight
        r = {"organisations": sum(n for _, _, n in groups),
             "population": sum(pop * n for k, pop, n in groups if k == "municipality")}
        r["inquiries_year"] = inquiries * share
        r["provisions_year"] = provisions * share
        r["inq_peak_s"] = r["inquiries_year"] * peak_s
        r["prov_peak_s"] = r["provisions_year"] * peak_s
        r["acq_peak_s"] = acquisitions * share * acq_peak_s
        minute = p["peak_minute"]
        ends_s = (r["inq_peak_s"] + r["prov_peak_s"]) * p["end_share"] * minute
        acq_s = r["acq_peak_s"] * minute
        r["exchanges_peak_minute_s"] = ends_s
        r["cores_exchange"] = (ends_s * p["inq_cpu_ours_s"] + acq_s * p["acq_cpu_ours_s"]) \
            * p["headroom"]
        r["cores_exchange_pg"] = r["cores_exchange"] * p["cpu_pg_share"]
        r["cores_exchange_mq"] = r["cores_exchange"] * p["cpu_mq_share"]
        r["commits_s"] = ends_s * p["inq_commits_chukan"] + acq_s * p["acq_commits_chukan"]
        r["commits_share"] = r["commits_s"] * p["headroom"] / p["pg_commits_s"]
        r["msgs_s"] = ends_s * p["msgs_per_exchange"]
        r["msgs_share"] = r["msgs_s"] * p["headroom"] / p["echo_msgs_s"]
        r["audit_peak_s"] = (r["inq_peak_s"] * p["audit_per_inquiry"]
                             + r["prov_peak_s"] * p["audit_per_provision"]) * minute
        r["audit_share"] = r["audit_peak_s"] * p["headroom"] / p["audit_append_rec_s"]

        # The night: every organisation at its daily cap (both caps hold; quota.rs).
        rows = nbytes = stock_rows = 0.0
        for kind, pop, n in groups:
            rec_cap, byte_cap = daily_cap(kind, pop)
            rows += min(rec_cap, byte_cap / p["entry_bytes"]) * p["cap_fill"] * n
            stock_rows += byte_cap * p["stock_days_of_cap"] / p["entry_bytes"] * n
        nbytes = rows * p["entry_bytes"]
        r["night_rows"] = rows
        r["night_file_bytes"] = nbytes
        r["night_hours_as_built"] = rows / as_built_rows_s / 3600
        r["night_cores"] = rows * cpu_row / (p["window_h"] * 3600) * p["headroom"]
        r["night_cores_pg"] = r["night_cores"] * (1 - p["replica_bytes_share"])
        r["upload_cores"] = nbytes / (p["upload_mb_s"] * 1e6) / (p["upload_hours"] * 3600) \
            * p["headroom"]
        r["night_wal_bytes"] = rows * row_bytes * p["wal_factor"]
        r["night_wal_mbit_s"] = r["night_wal_bytes"] * 8 / 1e6 / (p["window_h"] * 3600)

        # Seven years of provision records, their Merkle nodes and signed tree heads. Heads:
        # each log signs at most one per interval of service time, and a small log about one
        # per record (head_share).
        records_year = r["inquiries_year"] * p["audit_per_inquiry"] \
            + r["provisions_year"] * p["audit_per_provision"]
        r["audit_records"] = records_year * years
        r["audit_node_rows"] = 2 * r["audit_records"]
        heads = 0.0
        biggest = None
        seq_verify = 0.0
        for kind, pop, n in groups:
            org_records_year = records_year * KIND_SHARE[kind] * pop / weight
            org_heads = min(org_records_year * p["head_share"], head_slots_year) * years
            org_records = org_records_year * years
            org_verify = org_records / p["verify_rec_s"] + org_heads * p["ed25519_verify_s"]
            heads += org_heads * n
            seq_verify += org_verify * n
            if biggest is None or org_records > biggest[1]:
                biggest = (pop, org_records, org_heads, org_verify)
        r["tree_heads"] = heads
        r["audit_bytes"] = r["audit_records"] * (p["audit_record_bytes"] + p["audit_node_bytes"]) \
            + heads * p["tree_head_bytes"]
        r["biggest_pop"], r["biggest_records"], r["biggest_heads"], r["biggest_verify_s"] = biggest
        r["biggest_verify_rss"] = biggest[1] * p["verify_bytes_per_record"] \
            + biggest[2] * p["verify_bytes_per_head"]
        r["verify_all_s"] = seq_verify
        r["verify_heads_s"] = heads * p["ed25519_verify_s"]
        r["verify_parallel_s"] = max(seq_verify / p["verify_parallel"], biggest[3])

        # Storage, backup and restore.
        r["replica_rows"] = stock_rows * p["versions_factor"]
        r["replica_bytes"] = r["replica_rows"] * row_bytes
        r["exchange_bytes"] = (r["inquiries_year"] + r["provisions_year"]) * years \
            * p["exchange_row_bytes"]
        r["db_bytes"] = r["replica_bytes"] + r["audit_bytes"] + r["exchange_bytes"]
        rate = p["backup_mb_s"] * 1e6 * p["backup_processes"]
        r["backup_s"] = r["db_bytes"] / rate
        day_bytes = r["night_wal_bytes"] + (
            records_year * (p["audit_record_bytes"] + p["audit_node_bytes"])
            + (r["inquiries_year"] + r["provisions_year"]) * p["exchange_row_bytes"]) \
            * p["month_share"] * p["day_share"] * p["wal_factor"]
        r["wal_day_bytes"] = day_bytes
        r["restore_s"] = p["restore_fixed_s"] + r["db_bytes"] / rate \
            + day_bytes / (p["wal_replay_mb_s"] * 1e6)
        # restore-org restores the whole cluster into scratch, then copies one organisation.
        big_rows = max(daily_cap(k, pop)[1] * p["stock_days_of_cap"] / p["entry_bytes"]
                       for k, pop, _ in groups)
        r["restore_org_s"] = r["restore_s"] + big_rows / p["copy_rows_s"]
        out[cell] = r
    return out


# --- Printing -------------------------------------------------------------------------------

def si(x, unit=""):
    for div, suffix in ((1e12, " T"), (1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}{unit}"
    return f"{x:.3g}{' ' + unit if unit else ''}"


def nbytes(x):
    for div, suffix in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB")):
        if x >= div:
            return f"{x / div:.3g} {suffix}"
    return f"{x:.0f} B"


def dur(s):
    if s >= 3600:
        return f"{s / 3600:.2g} h"
    if s >= 60:
        return f"{s / 60:.2g} min"
    return f"{s:.2g} s"


def pct(x):
    return f"{100 * x:.2g} %"


ROWS = [
    ("Organisations (municipalities, prefectures, unions)", "organisations", lambda x: f"{x:,.0f}"),
    ("Residents (municipalities)", "population", si),
    ("Inquiries made / year", "inquiries_year", si),
    ("Provisions answered / year", "provisions_year", si),
    ("Peak inquiries/s (busiest hour)", "inq_peak_s", lambda x: f"{x:.3g}"),
    ("Peak provisions/s (busiest hour)", "prov_peak_s", lambda x: f"{x:.3g}"),
    ("Peak acquisitions/s (busiest hour)", "acq_peak_s", lambda x: f"{x:.3g}"),
    ("Exchange-equivalents/s, peak minute", "exchanges_peak_minute_s", lambda x: f"{x:.3g}"),
    ("Cores for exchanges + acquisitions (x headroom)", "cores_exchange", lambda x: f"{x:.2g}"),
    ("— of which PostgreSQL / RabbitMQ", None,
     lambda r: f"{r['cores_exchange_pg']:.2g} / {r['cores_exchange_mq']:.2g}"),
    ("Commits/s at peak minute (x headroom vs pgbench ceiling)", None,
     lambda r: f"{r['commits_s']:,.0f} ({pct(r['commits_share'])})"),
    ("Bus messages/s at peak minute (x headroom vs echo ceiling)", None,
     lambda r: f"{r['msgs_s']:,.0f} ({pct(r['msgs_share'])})"),
    ("Audit records/s at peak minute (x headroom vs append rate)", None,
     lambda r: f"{r['audit_peak_s']:,.0f} ({pct(r['audit_share'])})"),
    ("Night at the caps: rows", "night_rows", si),
    ("Night at the caps: registration files", "night_file_bytes", nbytes),
    ("Night, as built (one batch, orgs in turn): hours", "night_hours_as_built",
     lambda x: f"{x:.2g} h"),
    ("Night, parallel: cores to fit the window (x headroom)", "night_cores", lambda x: f"{x:.2g}"),
    ("— of which PostgreSQL", "night_cores_pg", lambda x: f"{x:.2g}"),
    ("Daytime upload parsing: cores (x headroom)", "upload_cores", lambda x: f"{x:.2g}"),
    ("WAL of the night (and to the peer, Mbit/s over the window)", None,
     lambda r: f"{nbytes(r['night_wal_bytes'])} ({r['night_wal_mbit_s']:,.0f})"),
    ("Audit after retention: records", "audit_records", si),
    ("— Merkle node rows", "audit_node_rows", si),
    ("— signed tree heads (never purged)", "tree_heads", si),
    ("— bytes (records, nodes, heads)", "audit_bytes", nbytes),
    ("Biggest log: records / heads", None,
     lambda r: f"{si(r['biggest_records'])} / {si(r['biggest_heads'])}"),
    ("Biggest log: verify time / memory", None,
     lambda r: f"{dur(r['biggest_verify_s'])} / {nbytes(r['biggest_verify_rss'])}"),
    ("Verify every log, as built (in turn)", "verify_all_s", dur),
    ("— of which tree-head signatures", "verify_heads_s", dur),
    ("Verify every log, parallel", "verify_parallel_s", dur),
    ("Replica rows / bytes", None,
     lambda r: f"{si(r['replica_rows'])} / {nbytes(r['replica_bytes'])}"),
    ("Exchange rows (inquiries, provisions, inboxes)", "exchange_bytes", nbytes),
    ("Database size", "db_bytes", nbytes),
    ("WAL of the busiest day", "wal_day_bytes", nbytes),
    ("Full backup", "backup_s", dur),
    ("Restore + a day's WAL replay", "restore_s", dur),
    ("restore-org of the biggest organisation", "restore_org_s", dur),
]


def print_inputs(p, sources, kinds):
    print("| input | value | unit | from |")
    print("|---|---:|---|---|")
    for name, _, unit, _ in MEASURED + ASSUMED:
        if kinds == "measured" and name not in dict((m[0], 1) for m in MEASURED):
            continue
        if kinds == "assumed" and name in dict((m[0], 1) for m in MEASURED):
            continue
        v = p[name]
        shown = "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
        print(f"| `{name}` | {shown} | {unit} | {sources[name]} |")


def print_table(results):
    cells = list(results)
    print("| per cell | " + " | ".join(cells) + " |")
    print("|---|" + "---:|" * len(cells))
    for label, key, fmt in ROWS:
        vals = [fmt(results[c][key]) if key else fmt(results[c]) for c in cells]
        print(f"| {label} | " + " | ".join(vals) + " |")


# --- Measuring row sizes (the *_bytes defaults) ---------------------------------------------

ROW_BYTES_SQL = r"""
CREATE TABLE r (tenant_id text NOT NULL, seq bigint NOT NULL, record_id uuid NOT NULL UNIQUE,
  event text NOT NULL, inquirer_org text COLLATE "C" NOT NULL, provider_org text COLLATE "C" NOT NULL,
  affair_code text COLLATE "C" NOT NULL, procedure_code text COLLATE "C" NOT NULL,
  info_code text COLLATE "C" NOT NULL, serial_no text COLLATE "C" NOT NULL, branch_no int NOT NULL,
  permit_id text NOT NULL, addressee_bidx bytea, leaf_enc bytea NOT NULL, requested_at timestamptz,
  provided_at timestamptz, non_disclosure boolean NOT NULL, outcome text NOT NULL,
  at timestamptz NOT NULL, leaf_hash bytea NOT NULL, target_record_id uuid,
  reason text NOT NULL DEFAULT '', actor text NOT NULL DEFAULT '', PRIMARY KEY (tenant_id, seq));
CREATE INDEX ON r (tenant_id, addressee_bidx, seq); CREATE INDEX ON r (tenant_id, inquirer_org, seq);
CREATE INDEX ON r (tenant_id, provider_org, seq); CREATE INDEX ON r (tenant_id, at);
CREATE INDEX ON r (tenant_id, target_record_id, seq) WHERE target_record_id IS NOT NULL;
INSERT INTO r (tenant_id, seq, record_id, event, inquirer_org, provider_org, affair_code,
  procedure_code, info_code, serial_no, branch_no, permit_id, addressee_bidx, leaf_enc,
  requested_at, provided_at, non_disclosure, outcome, at, leaf_hash)
SELECT '1310010000000001', g, gen_random_uuid(), 'provision.made', '4010000000000004',
  '1310010000000001', 'JM00000000000002', 'JT00000000000201', 'TM00000000000031',
  lpad((g / 10)::text, 16, '0'), g % 10, gen_random_uuid()::text, sha256(g::text::bytea),
  (SELECT string_agg(sha256((g * 100 + k)::text::bytea), ''::bytea) FROM generate_series(1, 11) k),
  now(), now(), g % 50 = 0, 'provided', now() + g * interval '1 ms', sha256((g + 7)::text::bytea)
FROM generate_series(0, :n - 1) g;
CREATE TABLE nd (tenant_id text NOT NULL, level int NOT NULL, idx bigint NOT NULL,
  hash bytea NOT NULL, PRIMARY KEY (tenant_id, level, idx));
INSERT INTO nd SELECT '1310010000000001', l, i, sha256((l * 10000000 + i)::text::bytea)
FROM generate_series(0, 40) l, LATERAL generate_series(0, (:n::bigint >> l) - 1) i;
CREATE TABLE th (tenant_id text NOT NULL, size bigint NOT NULL, root bytea NOT NULL,
  signed_at timestamptz NOT NULL, kid text NOT NULL, signature bytea NOT NULL,
  PRIMARY KEY (tenant_id, size));
INSERT INTO th SELECT '1310010000000001', g, sha256(g::text::bytea), now(), 'audit-east-1',
  sha256(g::text::bytea) || sha256((g + 1)::text::bytea) FROM generate_series(1, :n) g;
CREATE TABLE rp (tenant_id text COLLATE "C" NOT NULL, key_bidx bytea NOT NULL,
  info_code text COLLATE "C" NOT NULL, major_version text COLLATE "C" NOT NULL,
  dataset text COLLATE "C" NOT NULL, record_id text COLLATE "C" NOT NULL,
  addressee_bidx bytea NOT NULL, public_start date, public_end date, sealed bytea NOT NULL,
  bytes integer NOT NULL, upload_id uuid NOT NULL, registered_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, key_bidx));
CREATE UNIQUE INDEX ON rp (tenant_id, record_id); CREATE INDEX ON rp (tenant_id, addressee_bidx);
CREATE TABLE sizes (what text, bytes float8);
INSERT INTO sizes VALUES ('audit_record_bytes', pg_total_relation_size('r') / :n::float8),
  ('audit_node_bytes', pg_total_relation_size('nd') / :n::float8),
  ('tree_head_bytes', pg_total_relation_size('th') / :n::float8);
"""
REPLICA_ROWS_SQL = r"""
TRUNCATE rp;
INSERT INTO rp SELECT '1310010000000001', sha256(g::text::bytea), 'TM00000000000002', '0002',
  '0101', 'R' || lpad(g::text, 15, '0'), sha256((g + 1)::text::bytea), '2018-07-02', NULL,
  substring((SELECT string_agg(sha256((g * 1000 + k)::text::bytea), ''::bytea)
             FROM generate_series(1, :sealed / 32 + 1) k) FROM 1 FOR :sealed),
  :entry, gen_random_uuid(), now()
FROM generate_series(0, :n - 1) g;
INSERT INTO sizes VALUES ('replica_' || :entry, pg_total_relation_size('rp') / :n::float8);
"""


def measure_row_bytes(url, n=200000):
    """Loads n synthetic rows into copies of audit.records (+ indexes), audit.nodes,
    audit.tree_heads and provision.replicas in a scratch database, and prints bytes per row
    (pg_total_relation_size): the *_bytes defaults above. Field sizes as
    loadtest/src/bin/audit_load.rs sends them; sealed replica = 301/760 of the entry."""
    db = "chukan_capacity_scratch"
    psql = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d"]

    def run(target, sql, **variables):
        args = psql + [target]
        for k, v in variables.items():
            args += ["-v", f"{k}={v}"]
        return subprocess.run(args, input=sql, text=True, check=True,
                              capture_output=True).stdout

    run(url, f"DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db};")
    scratch = url.rstrip("/") + "/" + db if url.count("/") <= 2 else \
        url.rsplit("/", 1)[0] + "/" + db
    try:
        run(scratch, ROW_BYTES_SQL, n=n)
        for entry in (760, 5120):
            run(scratch, REPLICA_ROWS_SQL, n=n, entry=entry, sealed=round(entry * 301 / 760))
        out = run(scratch, "SELECT what || ' ' || round(bytes::numeric, 1) FROM sizes;")
    finally:
        run(url, f"DROP DATABASE IF EXISTS {db};")
    sizes = dict((w, float(b)) for w, b in (line.split() for line in out.splitlines() if line))
    a, b = sizes["replica_760"], sizes["replica_5120"]
    per_byte = (b - a) / (5120 - 760)
    for k in ("audit_record_bytes", "audit_node_bytes", "tree_head_bytes"):
        print(f"{k} = {sizes[k]:.0f}")
    print(f"replica row: {a:.0f} B at 760, {b:.0f} B at 5,120 -> row_bytes_fixed = "
          f"{a - per_byte * 760:.0f}, row_bytes_per_entry_byte = {per_byte:.3f}")


# --- Main -----------------------------------------------------------------------------------

def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", nargs="?", help="run-all report (default: newest by its `at`)")
    ap.add_argument("--orgs-csv", help="organisations: cell,kind,population[,count] lines")
    ap.add_argument("--list", action="store_true", help="print every input and its source")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--measure-row-bytes", metavar="PG_URL",
                    help="measure the *_bytes defaults in a scratch database and exit")
    for name, default, unit, source in MEASURED + ASSUMED:
        ap.add_argument("--" + name.replace("_", "-"), type=float, default=None,
                        help=f"{unit}; default {default} ({source})".replace("%", "%%"))
    args = ap.parse_args()

    if args.measure_row_bytes:
        measure_row_bytes(args.measure_row_bytes)
        return 0

    p = {name: default for name, default, _, _ in MEASURED + ASSUMED}
    sources = {name: ("default: " if name in dict((m[0], 1) for m in MEASURED) else "")
               + source for name, _, _, source in MEASURED + ASSUMED}
    report_path = args.report or newest_report(root)
    report = {}
    if report_path:
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
        for name, (value, where) in from_report(report).items():
            p[name], sources[name] = value, where
    for name in p:
        flag = getattr(args, name)
        if flag is not None:
            p[name], sources[name] = flag, "flag"
    if p["replica_cpu_s_per_row"] is None:
        sources["replica_cpu_s_per_row"] = "derived: machine_cores x replica_busy_share / " \
            "replica_apply_rows_s"

    cells = organisations(p, args.orgs_csv)
    results = size(p, cells)
    if args.json:
        json.dump({"report": report_path, "inputs": p, "sources": sources,
                   "cells": results}, sys.stdout, indent=2)
        print()
        return 0

    where = os.path.relpath(report_path, root) if report_path else "none (defaults only)"
    print(f"Report: {where} (commit {report.get('commit', '—')}, {report.get('at', '—')}, "
          f"{report.get('machine', '—')})\n")
    print("Measured inputs:\n")
    print_inputs(p, sources, "measured")
    if args.list:
        print("\nAssumptions:\n")
        print_inputs(p, sources, "assumed")
    print("\nSizing:\n")
    print_table(results)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet under `| head`
    sys.exit(main())
