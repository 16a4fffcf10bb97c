"""chukan's Grafana dashboards, as code.

Writes one JSON file per dashboard into monitoring/dashboards/out/ (and removes any other
*.json there). The files are generated: change this program, never the JSON, and run

    scripts/check-dashboards              (builds, lints, and proves every query)
    scripts/check-dashboards --lint-only  (builds and lints only)

Built with the Grafana Foundation SDK (PyPI grafana-foundation-sdk, the version pinned in
scripts/check-dashboards, installed into tools/venv-dashboards).

Conventions every dashboard follows (enforced by check.py lint):
- a `datasource` variable (type prometheus) that every panel and every target uses;
- `$__rate_interval` as the window of every rate(), irate() and increase();
- a unit, a title and a description on every panel; a title, description and fixed uid on
  every dashboard;
- only metrics the Rust code exports (see monitoring/README.md, "Metric contract"); a panel
  of events that may not have happened yet (dead letters, panics) ends in
  `or on() vector(0)`, so its query still answers a series and the check stays strict.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

OUT = Path(__file__).resolve().parent / "out"
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
RI = "$__rate_interval"
TAGS = ["chukan", "generated"]

# Units (Grafana unit ids).
REQPS = "reqps"
OPS = "ops"
SECONDS = "s"
RATIO = "percentunit"
COUNT = "short"
TIMES = "suffix:×"
ON_OFF = "bool_on_off"
FROM_NOW = "dateTimeFromNow"


def none_yet(expr: str) -> str:
    """`expr`, or a single 0 when it has no series yet (events that have not happened)."""
    return f"{expr} or on() vector(0)"


def per_service(rule: str, selector: str = "") -> str:
    """A per-service ratio recording rule, 0 for a service that answered requests but has no
    series of the rule: the rules divide the 5xx rate by the total rate, and with no 5xx at
    all the numerator, and so the ratio, is empty rather than 0."""
    sel = f"{{{selector}}}" if selector else ""
    return f"({rule}{sel} or 0 * group by (service) ({HTTP}{sel}))"


def quantile(q: float, bucket: str, by: str = "", selector: str = "") -> str:
    group = f"{by}, le" if by else "le"
    return (
        f"histogram_quantile({q}, sum by ({group}) "
        f"(rate({bucket}{{{selector}}}[{RI}])))"
    )


class Board:
    """A dashboard under construction: panels get ids in order; rows group them."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self.uid = uid
        self.builder = (
            db.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(TAGS)
            .readonly()
            .refresh("30s")
            .time("now-6h", "now")
            .timezone("browser")
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .link(
                db.DashboardLink("chukan dashboards")
                .type(dm.DashboardLinkType.DASHBOARDS)
                .tags(["chukan"])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            )
            .with_variable(
                db.DatasourceVariable("datasource")
                .label("Data source")
                .description("The Prometheus that scrapes chukan's ops listeners (/metrics).")
                .type("prometheus")
            )
        )
        self.next_id = 1

    def variable(self, var: db.QueryVariable) -> "Board":
        self.builder.with_variable(var)
        return self

    def row(self, title: str) -> "Board":
        self.builder.with_row(db.Row(title).id(self.next_id))
        self.next_id += 1
        return self

    def add(self, panel) -> "Board":
        panel.id(self.next_id).datasource(DS)
        self.next_id += 1
        self.builder.with_panel(panel)
        return self

    def to_json(self) -> str:
        return json.dumps(
            self.builder.build(), cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False
        ) + "\n"


def target(expr: str, legend: str = "", ref: str = "A") -> prom.Dataquery:
    return (
        prom.Dataquery()
        .expr(expr)
        .legend_format(legend or "__auto")
        .ref_id(ref)
        .range()
        .datasource(DS)
    )


def targets(panel, queries: list[tuple[str, str]]):
    for i, (expr, legend) in enumerate(queries):
        panel.with_target(target(expr, legend, chr(ord("A") + i)))
    return panel


def graph(
    title: str,
    description: str,
    unit: str,
    queries: list[tuple[str, str]],
    width: int = 12,
    height: int = 8,
    stack: bool = False,
    thresholds: list[tuple[float, str]] | None = None,
    bars: bool = False,
):
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(width)
        .height(height)
        .min(0)
        .fill_opacity(10)
        .line_width(1)
        .show_points(cm.VisibilityMode.NEVER)
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )
    if stack:
        panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    if bars:
        panel.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(60)
    if thresholds:
        panel.thresholds(threshold_steps(thresholds)).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
        )
    return targets(panel, queries)


def single(
    title: str,
    description: str,
    unit: str,
    expr: str,
    width: int = 6,
    height: int = 4,
    thresholds: list[tuple[float, str]] | None = None,
):
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(cm.BigValueGraphMode.AREA)
        .color_mode(cm.BigValueColorMode.VALUE)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(threshold_steps(thresholds or []))
    )
    panel.with_target(target(expr, title, "A"))
    return panel


def threshold_steps(steps: list[tuple[float, str]]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=None, color="green")] + [dm.Threshold(value=v, color=c) for v, c in steps])
    )


# --- the dashboards ----------------------------------------------------------------------------

HTTP = "chukan_http_requests_total"
HTTP_BUCKET = "chukan_http_request_duration_seconds_bucket"
SLO_API = 0.001  # 99.9 % availability
SLO_INQUIRY = 0.01  # 99 % of automatic answers within 60 s


def overview() -> Board:
    b = Board(
        "chukan-platform-overview",
        "chukan / Platform overview",
        "The whole platform at a glance: API traffic, 5xx share against the 99.9 % availability "
        "SLO, latency, inquiries and their results, provisions (automatic answers), code "
        "acquisitions, dead letters and database pools. Generated by "
        "monitoring/dashboards/build.py: do not edit in Grafana.",
    )
    b.row("API")
    b.add(single(
        "Requests per second",
        "All HTTP requests answered by every chukan service.",
        REQPS,
        f"sum(rate({HTTP}[{RI}]))",
    ))
    b.add(single(
        "Worst 5xx share (5 min)",
        "The highest 5xx share over the last 5 minutes among services (recording rule "
        "service:chukan_http_request_errors:ratio_rate5m). Orange at the SLO's 0.1 %, red at "
        "the 14.4x burn rate that pages.",
        RATIO,
        none_yet("max(service:chukan_http_request_errors:ratio_rate5m)"),
        thresholds=[(SLO_API, "orange"), (14.4 * SLO_API, "red")],
    ))
    b.add(single(
        "Worst error-budget burn rate (1 h)",
        "The 1-hour 5xx share of the worst service divided by the 0.1 % budget: 1× spends "
        "exactly the 30-day budget; 14.4× (with the 5-minute window) pages "
        "(ChukanApiErrorBudgetBurn).",
        TIMES,
        none_yet(f"max(service:chukan_http_request_errors:ratio_rate1h) / {SLO_API}"),
        thresholds=[(1, "orange"), (14.4, "red")],
    ))
    b.add(single(
        "p95 latency, all routes",
        "95th percentile of the time from request to response head, over every service and "
        "route.",
        SECONDS,
        quantile(0.95, HTTP_BUCKET),
        thresholds=[(1, "orange"), (5, "red")],
    ))
    b.add(graph(
        "Requests by service",
        "HTTP requests answered per second, by service.",
        REQPS,
        [(f"sum by (service) (rate({HTTP}[{RI}]))", "{{service}}")],
        width=8,
    ))
    b.add(graph(
        "5xx share by service vs SLO",
        "Share of requests answered with a 5xx status over 5 minutes (recording rule), by "
        "service; the dashed line is the SLO's error budget (0.1 %). Calls refused outside "
        "service hours are not 5xx here (see \"Refused outside service hours\").",
        RATIO,
        [
            (per_service("service:chukan_http_request_errors:ratio_rate5m"), "{{service}}"),
            (f"vector({SLO_API})", "SLO budget (0.1 %)"),
        ],
        width=8,
    ))
    b.add(graph(
        "p95 latency by service",
        "95th percentile of the time from request to response head, by service.",
        SECONDS,
        [(quantile(0.95, HTTP_BUCKET, "service"), "{{service}}")],
        width=8,
    ))
    b.add(graph(
        "Error-budget burn rate by service",
        "5xx share over 1 hour and 6 hours divided by the 0.1 % budget. The SLO alerts page at "
        "14.4× (1 h) and 6× (6 h) when the short window agrees.",
        TIMES,
        [
            (f"{per_service('service:chukan_http_request_errors:ratio_rate1h')} / {SLO_API}", "{{service}} 1h"),
            (f"{per_service('service:chukan_http_request_errors:ratio_rate6h')} / {SLO_API}", "{{service}} 6h"),
        ],
        thresholds=[(6, "orange"), (14.4, "red")],
    ))
    b.add(graph(
        "Responses by status",
        "HTTP responses per second over all services, by status code.",
        REQPS,
        [(f"sum by (status) (rate({HTTP}[{RI}]))", "{{status}}")],
        stack=True,
    ))
    b.add(graph(
        "Refused outside service hours",
        "Calls answered 503 outside-service-hours by the hours gate, by service: the calendar "
        "at work, not failures, so they are kept out of the responses above and of the "
        "availability SLO. A caller that keeps calling at night shows here.",
        REQPS,
        [(none_yet("sum by (service) (rate(chukan_http_outside_hours_total[" + RI + "]))"), "{{service}}")],
    ))

    b.row("Inquiries and provisions")
    b.add(graph(
        "Inquiries entered",
        "Inquiries (情報照会) entered through the API, single or bulk lines, by outcome: "
        "accepted or the refusal's code.",
        OPS,
        [("sum by (outcome) (rate(chukan_inquiry_requests_total[" + RI + "]))", "{{outcome}}")],
        width=8,
    ))
    b.add(graph(
        "Inquiry results",
        "Results of inquiries received from the NWS, by status (provided, refused, …, "
        "duplicate, late, unknown).",
        OPS,
        [("sum by (status) (rate(chukan_inquiry_results_total[" + RI + "]))", "{{status}}")],
        width=8,
    ))
    b.add(graph(
        "Inquiry round trip",
        "Time from an inquiry's request to its result being stored: median and 95th "
        "percentile.",
        SECONDS,
        [
            (quantile(0.5, "chukan_inquiry_roundtrip_seconds_bucket"), "p50"),
            (quantile(0.95, "chukan_inquiry_roundtrip_seconds_bucket"), "p95"),
        ],
        width=8,
    ))
    b.add(graph(
        "Inquiries slower than 60 s vs SLO",
        "Share of automatically answered inquiries whose round trip exceeded 60 s, over 5 "
        "minutes and 1 hour (recording rules chukan:inquiry_roundtrip_slow:ratio_rate*); the "
        "dashed line is the SLO's budget (1 %).",
        RATIO,
        [
            ("chukan:inquiry_roundtrip_slow:ratio_rate5m", "5m"),
            ("chukan:inquiry_roundtrip_slow:ratio_rate1h", "1h"),
            (f"vector({SLO_INQUIRY})", "SLO budget (1 %)"),
        ],
        width=8,
    ))
    b.add(graph(
        "Provisions (automatic answers)",
        "Provision requests (情報提供) settled by this municipality's provision service, by "
        "outcome: provided, waiting, refused, no-record.",
        OPS,
        [("sum by (outcome) (rate(chukan_provision_answers_total[" + RI + "]))", "{{outcome}}")],
        width=8,
    ))
    b.add(graph(
        "Code acquisitions",
        "Code acquisition requests (符号取得) by how they were answered, and the NWS's answers "
        "by outcome.",
        OPS,
        [
            ("sum by (outcome) (rate(chukan_code_acquisition_requests_total[" + RI + "]))", "requests {{outcome}}"),
            ("sum by (outcome) (rate(chukan_code_acquisition_results_total[" + RI + "]))", "NWS answers {{outcome}}"),
        ],
        width=8,
    ))

    b.row("Notices, self-information and staff accounts")
    b.add(graph(
        "Notices",
        "Notices (通知) entered by outcome, dispatched by how, and the NWS's status answers "
        "and status checks by outcome.",
        OPS,
        [
            (none_yet("sum by (outcome) (rate(chukan_notice_requests_total[" + RI + "]))"), "entered {{outcome}}"),
            (none_yet("sum by (how) (rate(chukan_notice_dispatched_total[" + RI + "]))"), "dispatched {{how}}"),
            (none_yet("sum by (outcome) (rate(chukan_notice_status_total[" + RI + "]))"), "status {{outcome}}"),
            (none_yet("sum by (outcome) (rate(chukan_notice_status_checks_total[" + RI + "]))"), "checks {{outcome}}"),
        ],
        width=8,
    ))
    b.add(graph(
        "Self-information (自己情報)",
        "Residents' self-information requests by outcome, answers by status and reason code, "
        "and answers deferred (held for later) by target and reason.",
        OPS,
        [
            (none_yet("sum by (outcome) (rate(chukan_selfinfo_requests_total[" + RI + "]))"), "requests {{outcome}}"),
            (none_yet("sum by (status, reason_code) (rate(chukan_selfinfo_answers_total[" + RI + "]))"), "answers {{status}} {{reason_code}}"),
            (none_yet("sum by (target, reason) (rate(chukan_selfinfo_deferred_total[" + RI + "]))"), "deferred {{target}} {{reason}}"),
        ],
        width=8,
    ))
    b.add(graph(
        "Staff sign-in failures and locks",
        "Staff sign-ins refused by reason, accounts locked after repeated failures, and "
        "accounts unlocked by hand (by an administrator or an operator), in each interval. "
        "Many failures or locks at once may be a guessing attack.",
        COUNT,
        [
            (none_yet("sum by (reason) (increase(chukan_admin_login_failures_total[" + RI + "]))"), "failed {{reason}}"),
            (none_yet("sum(increase(chukan_admin_account_locks_total[" + RI + "]))"), "locked"),
            (none_yet("sum by (by) (increase(chukan_admin_account_unlocks_total[" + RI + "]))"), "unlocked by {{by}}"),
        ],
        width=8,
        bars=True,
    ))

    b.row("Messaging and database")
    b.add(single(
        "Dead letters waiting",
        "Messages in all dead-letter queues now (chukan_mq_dead_letter_messages, the highest "
        "value any process reports per queue). Any is work not done: see the "
        "ChukanDeadLetters runbook.",
        COUNT,
        none_yet("sum(max by (queue) (chukan_mq_dead_letter_messages))"),
        thresholds=[(1, "red")],
    ))
    b.add(graph(
        "Deliveries dead-lettered",
        "Deliveries sent to a dead-letter queue in each interval, by work queue; 0 when none "
        "ever was.",
        COUNT,
        [(none_yet("sum by (queue) (increase(chukan_mq_dead_lettered_total[" + RI + "]))"), "{{queue}}")],
        width=6,
        height=4,
        bars=True,
    ))
    b.add(graph(
        "Database pool in use",
        "Share of each process's database pool lent out (in_use / max), by service (the "
        "process's --target) and instance. The ChukanDbPoolSaturated alert fires above 90 % "
        "for 5 minutes.",
        RATIO,
        [(
            'chukan_db_pool_connections{state="in_use"} / ignoring (state) chukan_db_pool_max',
            "{{service}} {{instance}}",
        )],
        width=6,
        height=4,
        thresholds=[(0.9, "red")],
    ))
    b.add(graph(
        "Database pool waiters",
        "Requests waiting for a pooled database connection now, by service and instance.",
        COUNT,
        [("chukan_db_pool_waiting", "{{service}} {{instance}}")],
        width=6,
        height=4,
    ))
    return b


def service_red() -> Board:
    b = Board(
        "chukan-service-red",
        "chukan / Service RED",
        "Rate, errors and duration of the HTTP API of the chosen services, by route. The "
        "service variable lists the services that answered requests. Generated by "
        "monitoring/dashboards/build.py: do not edit in Grafana.",
    )
    b.variable(
        db.QueryVariable("service")
        .label("Service")
        .description("chukan service (the `service` label of chukan_http_requests_total).")
        .datasource(DS)
        .query(f"label_values({HTTP}, service)")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    sel = 'service=~"$service"'
    by = "service, method, route"
    total = f"sum by ({by}) (rate({HTTP}{{{sel}}}[{RI}]))"

    def share(status: str) -> str:
        bad = f'sum by ({by}) (rate({HTTP}{{{sel}, status=~"{status}"}}[{RI}]))'
        return f"({bad} or {total} * 0) / {total}"

    b.row("Rate")
    b.add(graph(
        "Requests by route",
        "Requests answered per second, by service, method and route pattern.",
        REQPS,
        [(total, "{{service}} {{method}} {{route}}")],
    ))
    b.add(graph(
        "Responses by status",
        "Responses per second by service and status code.",
        REQPS,
        [(f"sum by (service, status) (rate({HTTP}{{{sel}}}[{RI}]))", "{{service}} {{status}}")],
        stack=True,
    ))
    b.row("Errors")
    b.add(graph(
        "Availability (5 min) by service",
        "1 − the 5-minute 5xx share (recording rule); the dashed line is the 99.9 % objective.",
        RATIO,
        [
            (f"1 - {per_service('service:chukan_http_request_errors:ratio_rate5m', sel)}", "{{service}}"),
            (f"vector({1 - SLO_API})", "SLO 99.9 %"),
        ],
        width=8,
    ))
    b.add(graph(
        "5xx share by route",
        "Share of each route's requests answered with 5xx (server errors).",
        RATIO,
        [(share("5.."), "{{service}} {{method}} {{route}}")],
        width=8,
    ))
    b.add(graph(
        "4xx share by route",
        "Share of each route's requests refused with 4xx (the caller's mistakes, expired tokens, "
        "unknown resources); a rise after a release may be a contract break.",
        RATIO,
        [(share("4.."), "{{service}} {{method}} {{route}}")],
        width=8,
    ))
    b.row("Duration")
    for q, width in ((0.5, 8), (0.95, 8), (0.99, 8)):
        b.add(graph(
            f"Latency p{round(q * 100)} by route",
            f"{round(q * 100)}th percentile of the time from request to response head, by "
            "service, method and route pattern.",
            SECONDS,
            [(quantile(q, HTTP_BUCKET, by, sel), "{{service}} {{method}} {{route}}")],
            width=width,
        ))
    return b


def bus_outbox() -> Board:
    b = Board(
        "chukan-bus-outbox",
        "chukan / Bus and outbox",
        "The message bus between chukan's services: deliveries consumed by queue and outcome, "
        "dead letters, handler panics, work queue depths, the transactional outboxes and "
        "inboxes, and request/reply calls. Generated by monitoring/dashboards/build.py: do not "
        "edit in Grafana.",
    )
    b.row("Consumers")
    b.add(graph(
        "Deliveries consumed",
        "Deliveries handled per second, by queue and outcome (ok, retried, dead_lettered, "
        "rejected, requeued).",
        OPS,
        [("sum by (queue, outcome) (rate(chukan_mq_consumed_total[" + RI + "]))", "{{queue}} {{outcome}}")],
    ))
    b.add(graph(
        "Deliveries not handled",
        "Deliveries whose outcome was not ok, per second, by queue and outcome; 0 when none.",
        OPS,
        [(none_yet('sum by (queue, outcome) (rate(chukan_mq_consumed_total{outcome!="ok"}[' + RI + "]))"), "{{queue}} {{outcome}}")],
    ))
    b.add(graph(
        "Work queue depth",
        "Messages ready in each work queue (not yet delivered), the highest value any process "
        "reports.",
        COUNT,
        [("max by (queue) (chukan_mq_queue_messages)", "{{queue}}")],
    ))
    b.add(graph(
        "Handler panics",
        "Consumer handlers that panicked in each interval, by queue (a defect; "
        "ChukanMqHandlerPanics). 0 when none ever did.",
        COUNT,
        [(none_yet("sum by (queue) (increase(chukan_mq_handler_panics_total[" + RI + "]))"), "{{queue}}")],
        bars=True,
    ))
    b.row("Dead letters")
    b.add(graph(
        "Dead letters waiting",
        "Messages in each work queue's dead-letter queue (<queue>.dead) now; any needs an "
        "operator (ChukanDeadLetters).",
        COUNT,
        [(none_yet("max by (queue) (chukan_mq_dead_letter_messages)"), "{{queue}}")],
        thresholds=[(1, "red")],
    ))
    b.add(graph(
        "Deliveries dead-lettered",
        "Deliveries sent to a dead-letter queue in each interval, by work queue; 0 when none "
        "ever was.",
        COUNT,
        [(none_yet("sum by (queue) (increase(chukan_mq_dead_lettered_total[" + RI + "]))"), "{{queue}}")],
        bars=True,
    ))
    b.row("Outboxes and inboxes")
    b.add(graph(
        "Outbox backlog",
        "Rows waiting in each schema's outbox (committed, not yet confirmed by the broker).",
        COUNT,
        [("max by (schema) (chukan_outbox_backlog)", "{{schema}}")],
        width=8,
    ))
    b.add(graph(
        "Oldest outbox row",
        "Age of the oldest row waiting in each schema's outbox; 0 when empty. Warning at "
        "5 minutes, critical at 30 (ChukanOutboxBacklogOld).",
        SECONDS,
        [("max by (schema) (chukan_outbox_oldest_age_seconds)", "{{schema}}")],
        width=8,
        thresholds=[(300, "orange"), (1800, "red")],
    ))
    b.add(graph(
        "Inbox rows",
        "Rows in each schema's inbox (message ids its consumers applied; none is removed). "
        "ChukanInboxLarge at 10 million.",
        COUNT,
        [("max by (schema) (chukan_inbox_rows)", "{{schema}}")],
        width=8,
    ))
    b.row("Request/reply")
    b.add(graph(
        "RPC calls made",
        "Request/reply calls made per second, by server queue and outcome (ok, timeout, "
        "remote_error, no_server, unavailable).",
        OPS,
        [("sum by (queue, outcome) (rate(chukan_mq_rpc_calls_total[" + RI + "]))", "{{queue}} {{outcome}}")],
    ))
    b.add(graph(
        "RPC requests served",
        "Requests a server handled per second, by queue and outcome (ok, error, expired, "
        "malformed).",
        OPS,
        [("sum by (queue, outcome) (rate(chukan_mq_rpc_served_total[" + RI + "]))", "{{queue}} {{outcome}}")],
    ))
    return b


# Monday–Friday 21:00–24:00 JST is 12:00–15:00 UTC of the same weekday (JST = UTC + 9, no
# daylight saving time). PromQL's hour() and day_of_week() are UTC.
STOP_WINDOW = "(day_of_week() >= bool 1) * (day_of_week() <= bool 5) * (hour() >= bool 12) * (hour() < bool 15)"


def nws_link() -> Board:
    b = Board(
        "chukan-nws-link",
        "chukan / NWS link and stop window",
        "relay's link to the national network (NWS): sends by outcome and their duration, "
        "messages held during the data send/receive stop (送受信停止) and released afterwards, "
        "inbound messages, readiness checks. Generated by monitoring/dashboards/build.py: do "
        "not edit in Grafana.",
    )
    b.row("Now")
    b.add(single(
        "Send error share (10 min)",
        "Share of sends to the NWS refused or to be retried over 10 minutes (recording rule "
        "chukan:relay_send_errors:ratio_rate10m). ChukanNwsLinkErrors: warning above 5 %, "
        "critical above 50 %.",
        RATIO,
        none_yet("chukan:relay_send_errors:ratio_rate10m"),
        thresholds=[(0.05, "orange"), (0.5, "red")],
    ))
    b.add(single(
        "Held now",
        "Outbound messages held (link stopped, or a held backlog still releasing), not yet "
        "released.",
        COUNT,
        "max(chukan_relay_held)",
        thresholds=[(1, "orange")],
    ))
    b.add(single(
        "Oldest held message",
        "Age of the oldest held outbound message not yet released; 0 when none. Critical "
        "after an hour while the link is open (ChukanRelayHeldTooOld).",
        SECONDS,
        "max(chukan_relay_held_oldest_age_seconds)",
        thresholds=[(3600, "red")],
    ))
    b.add(single(
        "Weekday stop window (scheduled)",
        "On while the weekday data send/receive stop is scheduled: Monday–Friday 21:00–24:00 "
        "JST, computed from the clock. Holidays and other stops of the calendar are not known "
        "here; 'Held now' shows what relay actually does.",
        ON_OFF,
        STOP_WINDOW,
    ))
    b.row("Outbound")
    b.add(graph(
        "Sends to the NWS",
        "Outbound HTTP sends to the NWS per second by outcome: sent, duplicate (already "
        "there), rejected (4xx), retry (transient), malformed.",
        OPS,
        [("sum by (outcome) (rate(chukan_relay_send_total[" + RI + "]))", "{{outcome}}")],
    ))
    b.add(graph(
        "Send duration",
        "Duration of one HTTP send to the NWS, whatever its outcome: median, 95th and 99th "
        "percentile.",
        SECONDS,
        [
            (quantile(0.5, "chukan_relay_send_duration_seconds_bucket"), "p50"),
            (quantile(0.95, "chukan_relay_send_duration_seconds_bucket"), "p95"),
            (quantile(0.99, "chukan_relay_send_duration_seconds_bucket"), "p99"),
        ],
    ))
    b.row("Stop window: held and released")
    b.add(graph(
        "Held, released, dead",
        "Per second: outbound messages held instead of sent, held messages released to the "
        "NWS, and held messages the NWS refused on release (kept, marked dead).",
        OPS,
        [
            (none_yet("sum(rate(chukan_relay_held_total[" + RI + "]))"), "held"),
            (none_yet("sum(rate(chukan_relay_released_total[" + RI + "]))"), "released"),
            (none_yet("sum(rate(chukan_relay_held_dead_total[" + RI + "]))"), "dead"),
        ],
        width=8,
    ))
    b.add(graph(
        "Held backlog",
        "Held outbound messages not yet released, with the scheduled weekday stop window "
        "(1 while it is on) for orientation.",
        COUNT,
        [
            ("max(chukan_relay_held)", "held"),
            (STOP_WINDOW, "stop window (scheduled)"),
        ],
        width=8,
    ))
    b.add(graph(
        "Oldest held message over time",
        "Age of the oldest held outbound message not yet released; 0 when none.",
        SECONDS,
        [("max(chukan_relay_held_oldest_age_seconds)", "oldest held")],
        width=8,
        thresholds=[(3600, "red")],
    ))
    b.add(graph(
        "NWS readiness checks",
        "Readiness checks of the NWS before releasing held messages, by result (ready, "
        "not-ready); 0 when there was nothing to release.",
        OPS,
        [(none_yet("sum by (result) (rate(chukan_relay_nws_readiness_checks_total[" + RI + "]))"), "{{result}}")],
    ))
    b.add(graph(
        "Inbound from the NWS",
        "Inbound NWS messages accepted and handed to the bus, and those refused by the "
        "problem code of the refusal (signature, format, …).",
        OPS,
        [
            (none_yet("sum(rate(chukan_relay_inbound_accepted_total[" + RI + "]))"), "accepted"),
            (none_yet("sum by (reason) (rate(chukan_relay_inbound_refused_total[" + RI + "]))"), "refused {{reason}}"),
        ],
    ))
    return b


def replica_batch() -> Board:
    b = Board(
        "chukan-replica-batch",
        "chukan / Replica night batch",
        "Replica registration (副本登録): registration lists received, the entries the batch "
        "applied (at night, or at once for municipalities set to immediate processing), the "
        "last successful nightly run, and the provider look-ups that read the replicas. "
        "Generated by monitoring/dashboards/build.py: do not edit in Grafana.",
    )
    b.row("Nightly run")
    b.add(single(
        "Last successful nightly run",
        "When the nightly replica batch last finished successfully (provision reads it from "
        "the database). The ChukanNightlyReplicaBatchLate alert fires from 08:00 JST if last "
        "night's run (22:00 JST) has not succeeded; a run that never succeeded shows as 1970.",
        FROM_NOW,
        "max(chukan_batch_last_success_timestamp_seconds) * 1000",
        width=8,
    ))
    b.add(single(
        "Time since the last successful run",
        "Time since the nightly replica batch last finished successfully. Over about 10 hours "
        "at 08:00 JST means last night's run did not succeed.",
        SECONDS,
        "time() - max(chukan_batch_last_success_timestamp_seconds)",
        width=8,
        thresholds=[(36000, "orange"), (129600, "red")],
    ))
    b.add(single(
        "Provision work waiting",
        "Messages ready in provision's work queues now, all queues.",
        COUNT,
        none_yet('sum(max by (queue) (chukan_mq_queue_messages{queue=~"provision\\\\..+"}))'),
        width=8,
    ))
    b.row("Progress")
    b.add(graph(
        "Entries applied",
        "Registration list entries applied by the batch per second, by outcome: registered, "
        "overwritten, deleted, rejected. A night's run shows as a block of activity after "
        "22:00 JST.",
        OPS,
        [(none_yet("sum by (outcome) (rate(chukan_provision_entries_total[" + RI + "]))"), "{{outcome}}")],
        stack=True,
    ))
    b.add(graph(
        "Registration lists received",
        "Registration lists (uploads) received in each interval, by outcome: accepted or the "
        "refusal code.",
        COUNT,
        [(none_yet("sum by (outcome) (increase(chukan_provision_uploads_total[" + RI + "]))"), "{{outcome}}")],
        bars=True,
    ))
    b.add(graph(
        "Provision queue depth",
        "Messages ready in provision's work queues (registration work and provision "
        "requests waiting for the service).",
        COUNT,
        [(none_yet('max by (queue) (chukan_mq_queue_messages{queue=~"provision\\\\..+"})'), "{{queue}}")],
    ))
    b.add(graph(
        "Provider look-up duration",
        "Time of the provider's look-up for an automatic answer (code, addressee, flags, "
        "replicas, records): median, 95th and 99th percentile.",
        SECONDS,
        [
            (quantile(0.5, "chukan_provision_lookup_seconds_bucket"), "p50"),
            (quantile(0.95, "chukan_provision_lookup_seconds_bucket"), "p95"),
            (quantile(0.99, "chukan_provision_lookup_seconds_bucket"), "p99"),
        ],
    ))
    return b


def audit() -> Board:
    b = Board(
        "chukan-audit",
        "chukan / Audit log",
        "The provision-record log (情報提供等記録): audit events appended, records per append "
        "transaction, signed tree heads, retention purges and rows that failed their integrity "
        "check. Generated by monitoring/dashboards/build.py: do not edit in Grafana.",
    )
    b.add(single(
        "Tree head age",
        "Now minus the newest signed tree head while some provision-record log has records no "
        "signed head covers yet; 0 when every record is covered. ChukanAuditTreeHeadStale "
        "fires above 15 minutes.",
        SECONDS,
        "max(chukan_audit_tree_head_age_seconds)",
        width=8,
        thresholds=[(900, "orange")],
    ))
    b.add(graph(
        "Tree head age over time",
        "Age of the newest signed tree head while records wait for one (0 when all are "
        "covered), the highest value any process reports; the dashed line is the alert's "
        "15 minutes.",
        SECONDS,
        [("max(chukan_audit_tree_head_age_seconds)", "tree head age")],
        width=16,
        height=4,
        thresholds=[(900, "orange")],
    ))
    b.add(graph(
        "Audit events consumed",
        "Audit events consumed per second, by outcome: appended, duplicate-message, "
        "duplicate-record.",
        OPS,
        [("sum by (outcome) (rate(chukan_audit_appended_total[" + RI + "]))", "{{outcome}}")],
    ))
    b.add(graph(
        "Records per append",
        "Records per append transaction (one tenant's share of a consumer batch): mean and "
        "95th percentile.",
        COUNT,
        [
            (
                "sum(rate(chukan_audit_append_batch_records_sum[" + RI + "])) / sum(rate(chukan_audit_append_batch_records_count[" + RI + "]))",
                "mean",
            ),
            (quantile(0.95, "chukan_audit_append_batch_records_bucket"), "p95"),
        ],
    ))
    b.add(graph(
        "Signed tree heads",
        "Signed tree heads written in each interval. Records appended but not covered by a "
        "head for 15 minutes raise ChukanAuditTreeHeadStale.",
        COUNT,
        [(none_yet("sum(increase(chukan_audit_tree_heads_total[" + RI + "]))"), "tree heads")],
        width=8,
        bars=True,
    ))
    b.add(graph(
        "Records purged",
        "Records removed by the retention purge in each interval (a checkpoint keeps the log "
        "verifiable).",
        COUNT,
        [(none_yet("sum(increase(chukan_audit_purged_records_total[" + RI + "]))"), "purged")],
        width=8,
        bars=True,
    ))
    b.add(graph(
        "Untrusted rows read",
        "Rows whose searchable copy or leaf failed its check when read, by reader (search, "
        "disclosable). Any is tampering behind the service.",
        COUNT,
        [(none_yet("sum by (reader) (increase(chukan_audit_untrusted_rows_total[" + RI + "]))"), "{{reader}}")],
        width=8,
        thresholds=[(1, "red")],
        bars=True,
    ))
    return b


def statistics() -> Board:
    b = Board(
        "chukan-statistics",
        "chukan / Statistics",
        "The statistics service: events applied by kind and effect, how far statistics trail "
        "the services, events waiting in the stats.* queues, and replica statistics snapshots. "
        "Generated by monitoring/dashboards/build.py: do not edit in Grafana.",
    )
    b.add(single(
        "Statistics lag",
        "How far statistics trail the services: while events wait, now minus the time of the "
        "newest event applied (it keeps growing when the consumer stalls); otherwise that "
        "event's age when it was applied. ChukanStatsLagHigh considers 15 minutes too late.",
        SECONDS,
        "max(chukan_stats_lag_seconds)",
        width=8,
        thresholds=[(900, "orange")],
    ))
    b.add(single(
        "Events waiting in stats queues",
        "Messages ready in the stats.* work queues now.",
        COUNT,
        none_yet('sum(max by (queue) (chukan_mq_queue_messages{queue=~"stats\\\\..+"}))'),
        width=8,
    ))
    b.add(single(
        "Events applied per second",
        "Statistics events applied per second, every kind and effect.",
        OPS,
        "sum(rate(chukan_stats_events_total[" + RI + "]))",
        width=8,
    ))
    b.add(graph(
        "Events applied",
        "Statistics events applied per second, by kind and effect (changed; unchanged: a "
        "redelivered or overtaken event).",
        OPS,
        [("sum by (kind, effect) (rate(chukan_stats_events_total[" + RI + "]))", "{{kind}} {{effect}}")],
    ))
    b.add(graph(
        "Statistics lag over time",
        "How far statistics trail the services (see the stat above), over time.",
        SECONDS,
        [("max(chukan_stats_lag_seconds)", "lag")],
        thresholds=[(900, "orange")],
    ))
    b.add(graph(
        "Events per counting transaction",
        "Exchange events counted per transaction (one organisation's share of a batch): "
        "mean and 95th percentile. Near 1 when the service keeps up; hundreds while it "
        "drains a backlog.",
        COUNT,
        [
            (
                "sum(rate(chukan_stats_exchange_batch_events_sum[" + RI + "])) / "
                "sum(rate(chukan_stats_exchange_batch_events_count[" + RI + "]))",
                "mean",
            ),
            (quantile(0.95, "chukan_stats_exchange_batch_events_bucket"), "p95"),
        ],
    ))
    b.add(graph(
        "stats.* queue depth",
        "Messages ready in each statistics work queue.",
        COUNT,
        [(none_yet('max by (queue) (chukan_mq_queue_messages{queue=~"stats\\\\..+"})'), "{{queue}}")],
    ))
    b.add(graph(
        "Snapshots taken",
        "Replica statistics snapshots taken in each interval, by reason (monthly, weekly, "
        "on-demand).",
        COUNT,
        [(none_yet("sum by (reason) (increase(chukan_stats_snapshots_total[" + RI + "]))"), "{{reason}}")],
        bars=True,
    ))
    return b


DASHBOARDS = [overview, service_red, bus_outbox, nws_link, replica_batch, audit, statistics]


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    written = set()
    for make in DASHBOARDS:
        board = make()
        text = board.to_json()
        # The SDK's own model must read the JSON back to the same text (a schema check
        # without a Grafana server).
        again = json.dumps(
            dm.Dashboard.from_json(json.loads(text)), cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False
        ) + "\n"
        if again != text:
            print(f"build.py: {board.uid} does not survive a round trip through the SDK's model", file=sys.stderr)
            return 1
        path = OUT / f"{board.uid}.json"
        path.write_text(text, encoding="utf-8")
        written.add(path.name)
    for stale in OUT.glob("*.json"):
        if stale.name not in written:
            stale.unlink()
    print(f"build.py: wrote {len(written)} dashboards to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
