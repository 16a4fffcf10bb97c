//! 統計: business statistics (exchanges per Japan day, with a bar chart drawn here as SVG),
//! replica statistics and the registration plan, and their CSV files passed through from the
//! API. Only dates and codes travel in these URLs, nothing about a resident.

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{
    Console,
    api::{ApiError, Problem},
    pages::{Failure, records::event_label, shared::beside},
    session::Staff,
    view::{self, Errors, Layout, Screen},
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/statistics", web::get().to(show))
        .route("/statistics/exchanges.csv", web::get().to(exchanges_csv))
        .route("/statistics/replicas.csv", web::get().to(replicas_csv));
}

// ---------------------------------------------------------------------------------------
// What the API answers
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Exchanges {
    from: String,
    to: String,
    rows: Vec<ExchangeRow>,
}

#[derive(Deserialize)]
struct ExchangeRow {
    day: String,
    event: String,
    affair_code: String,
    procedure_code: String,
    info_code: String,
    outcome: String,
    count: i64,
    timed: i64,
    p50_ms: Option<i64>,
    p95_ms: Option<i64>,
    max_ms: Option<i64>,
}

impl ExchangeRow {
    fn event_label(&self) -> &'static str {
        event_label(&self.event)
    }
}

#[derive(Deserialize)]
struct Replicas {
    date: String,
    reason: String,
    taken_at: Option<String>,
    compare: Option<String>,
    rows: Vec<ReplicaRow>,
    total: i64,
}

#[derive(Deserialize)]
struct ReplicaRow {
    info_code: String,
    major_version: String,
    dataset: String,
    count: i64,
    compare_count: Option<i64>,
    difference: Option<i64>,
}

#[derive(Deserialize)]
struct Snapshots {
    snapshots: Vec<Snapshot>,
}

#[derive(Deserialize)]
struct Snapshot {
    date: String,
    reason: String,
    taken_at: Option<String>,
}

impl Replicas {
    fn reason_label(&self) -> &'static str {
        reason_label(&self.reason)
    }
}

impl Snapshot {
    fn reason_label(&self) -> &'static str {
        reason_label(&self.reason)
    }

    fn taken_jst(&self) -> String {
        self.taken_at
            .as_deref()
            .map(view::jst_text)
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct Plans {
    plans: Vec<Plan>,
}

#[derive(Deserialize)]
struct Plan {
    org_code: String,
    info_code: String,
    date: String,
    planned_count: i64,
    actual_count: i64,
    shortfall: f64,
}

impl Plan {
    /// The shortfall as a whole percentage, for reading.
    fn shortfall_percent(&self) -> String {
        format!("{:.0}%", self.shortfall * 100.0)
    }
}

/// Why a snapshot was taken, in words.
fn reason_label(reason: &str) -> &'static str {
    match reason {
        "monthly" => "月次",
        "weekly" => "週次",
        "on-demand" => "臨時",
        _ => "その他",
    }
}

/// Events the business statistics count, for the filter.
const EVENTS: &[&str] = &[
    "inquiry.sent",
    "result.received",
    "permit.refused",
    "provision.made",
    "provision.manual",
    "provision.refused",
    "code.acquired",
    "code.failed",
    "notice.sent",
    "notice.status-received",
    "selfinfo.answered",
    "selfinfo.refused",
];

// ---------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------

/// The page's filters (a GET form: dates and event codes only).
#[derive(Deserialize, Default, Clone)]
struct Filters {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    compare: String,
}

/// A query string of the non-empty pairs, encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (*k, v.trim()))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    serde_urlencoded::to_string(kept).unwrap_or_default()
}

impl Filters {
    fn exchanges_query(&self, extra: &[(&str, &str)]) -> String {
        let mut pairs = vec![
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
            ("event", self.event.as_str()),
        ];
        pairs.extend_from_slice(extra);
        query(&pairs)
    }

    fn replicas_query(&self, extra: &[(&str, &str)]) -> String {
        let mut pairs = vec![
            ("date", self.date.as_str()),
            ("compare", self.compare.as_str()),
        ];
        pairs.extend_from_slice(extra);
        query(&pairs)
    }
}

/// One bar of the chart, in SVG user units.
struct Bar {
    x: i64,
    y: i64,
    width: i64,
    height: i64,
    /// `MM-DD` under the bar (empty when too many days to label each).
    label: String,
    day: String,
    count: i64,
    label_x: i64,
}

/// A bar chart of exchanges per day, drawn on the server (no script on these pages).
struct Chart {
    width: i64,
    height: i64,
    baseline: i64,
    max: i64,
    bars: Vec<Bar>,
    /// Per-day totals, for the table beside the chart.
    days: Vec<(String, i64)>,
}

const CHART_WIDTH: i64 = 720;
const CHART_HEIGHT: i64 = 220;
const CHART_TOP: i64 = 20;
const CHART_BOTTOM: i64 = 30;
const CHART_LEFT: i64 = 40;
/// Beyond this many days, only every few days are labelled.
const LABEL_EVERY_DAY: usize = 16;

/// Every day from `from` to `to` with its total count (days without rows count 0).
fn day_totals(from: &str, to: &str, rows: &[ExchangeRow]) -> Vec<(String, i64)> {
    let (Ok(from), Ok(to)) = (
        NaiveDate::parse_from_str(from, "%Y-%m-%d"),
        NaiveDate::parse_from_str(to, "%Y-%m-%d"),
    ) else {
        return Vec::new();
    };
    from.iter_days()
        .take_while(|d| *d <= to)
        .take(400)
        .map(|d| {
            let day = d.format("%Y-%m-%d").to_string();
            let total = rows.iter().filter(|r| r.day == day).map(|r| r.count).sum();
            (day, total)
        })
        .collect()
}

fn chart(days: Vec<(String, i64)>) -> Chart {
    let max = days.iter().map(|(_, c)| *c).max().unwrap_or(0).max(1);
    let n = i64::try_from(days.len()).unwrap_or(1).max(1);
    let plot_height = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM;
    let slot = ((CHART_WIDTH - CHART_LEFT) / n).max(1);
    let label_every = days.len().div_ceil(LABEL_EVERY_DAY).max(1);
    let baseline = CHART_HEIGHT - CHART_BOTTOM;
    let bars = days
        .iter()
        .enumerate()
        .map(|(i, (day, count))| {
            let height = count * plot_height / max;
            let x = CHART_LEFT + i64::try_from(i).unwrap_or(0) * slot + slot / 8;
            let width = (slot * 3 / 4).max(1);
            Bar {
                x,
                y: baseline - height,
                width,
                height,
                label: if i % label_every == 0 {
                    day.get(5..).unwrap_or(day).to_string()
                } else {
                    String::new()
                },
                day: day.clone(),
                count: *count,
                label_x: x + width / 2,
            }
        })
        .collect();
    Chart {
        width: CHART_WIDTH,
        height: CHART_HEIGHT,
        baseline,
        max,
        bars,
        days,
    }
}

#[derive(Template)]
#[template(path = "statistics.html")]
struct StatisticsPage {
    layout: Layout,
    filters: Filters,
    events: Vec<(&'static str, &'static str)>,
    exchange_errors: Errors,
    exchanges: Option<Exchanges>,
    chart: Option<Chart>,
    exchanges_csv: String,
    exchanges_csv_sjis: String,
    replica_errors: Errors,
    /// None when no snapshot was taken yet (or none on the date asked for).
    replicas: Option<Replicas>,
    replicas_csv: String,
    snapshots: Vec<Snapshot>,
    plans: Vec<Plan>,
}

/// A problem shown on the page (a refused filter, a missing snapshot); anything else is a
/// failure of the page.
fn shown_problem(e: ApiError) -> Result<Problem, Failure> {
    super::shared::shown_problem(e, &[400, 404, 422])
}

async fn show(
    console: web::Data<Console>,
    staff: Staff,
    filters: web::Query<Filters>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Statistics)?;
    let filters = filters.into_inner();
    let exchanges_path = format!("/v1/statistics/exchanges?{}", filters.exchanges_query(&[]));
    let replicas_path = format!("/v1/statistics/replicas?{}", filters.replicas_query(&[]));
    let (exchanges, replicas, snapshots, plans) = futures_util::join!(
        console.api.get::<Exchanges>(&staff, &exchanges_path),
        console.api.get::<Replicas>(&staff, &replicas_path),
        console
            .api
            .get::<Snapshots>(&staff, "/v1/statistics/replicas/snapshots"),
        console.api.get::<Plans>(&staff, "/v1/statistics/schedule"),
    );
    let mut page = StatisticsPage {
        layout: Layout::new(&staff, Screen::Statistics, "統計"),
        events: EVENTS.iter().map(|e| (*e, event_label(e))).collect(),
        exchange_errors: Errors::default(),
        exchanges: None,
        chart: None,
        exchanges_csv: String::new(),
        exchanges_csv_sjis: String::new(),
        replica_errors: Errors::default(),
        replicas: None,
        replicas_csv: String::new(),
        snapshots: snapshots?.snapshots,
        plans: plans?.plans,
        filters,
    };
    match exchanges {
        Ok(x) => page.show_exchanges(x),
        Err(e) => {
            page.exchange_errors = beside(shown_problem(e)?, &["from", "to", "event"], &[]);
        }
    }
    match replicas {
        Ok(r) => page.show_replicas(r),
        Err(e) => page.replica_errors = beside(shown_problem(e)?, &["date", "compare"], &[]),
    }
    view::page(&staff, &page)
}

impl StatisticsPage {
    fn show_exchanges(&mut self, x: Exchanges) {
        // The dates the API chose (its defaults) fill the form and the download links.
        self.filters.from.clone_from(&x.from);
        self.filters.to.clone_from(&x.to);
        self.exchanges_csv = format!(
            "/statistics/exchanges.csv?{}",
            self.filters.exchanges_query(&[])
        );
        self.exchanges_csv_sjis = format!(
            "/statistics/exchanges.csv?{}",
            self.filters.exchanges_query(&[("encoding", "shift_jis")])
        );
        self.chart = Some(chart(day_totals(&x.from, &x.to, &x.rows)));
        self.exchanges = Some(x);
    }

    fn show_replicas(&mut self, r: Replicas) {
        self.filters.date.clone_from(&r.date);
        if let Some(c) = &r.compare {
            self.filters.compare.clone_from(c);
        }
        self.replicas_csv = format!(
            "/statistics/replicas.csv?{}",
            self.filters.replicas_query(&[])
        );
        self.replicas = Some(r);
    }

    fn taken_jst(&self) -> String {
        self.replicas
            .as_ref()
            .and_then(|r| r.taken_at.as_deref())
            .map(view::jst_text)
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------
// CSV, passed through
// ---------------------------------------------------------------------------------------

/// `?encoding=` of a download: the API's two character sets.
#[derive(Deserialize, Serialize, Default)]
struct Encoding {
    #[serde(default)]
    encoding: String,
}

fn encoding_of(e: &Encoding) -> &'static str {
    if e.encoding == "shift_jis" {
        "shift_jis"
    } else {
        "utf-8"
    }
}

/// The API's file as it is (its type and file name), with the renewed session cookie.
async fn pass_through(
    console: &Console,
    staff: &Staff,
    path: &str,
) -> Result<HttpResponse, Failure> {
    let file = console.api.download(staff, path).await?;
    Ok(super::shared::pass_on(staff, file))
}

async fn exchanges_csv(
    console: web::Data<Console>,
    staff: Staff,
    filters: web::Query<Filters>,
    encoding: web::Query<Encoding>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Statistics)?;
    let encoding = encoding_of(&encoding);
    let q = filters.exchanges_query(&[("format", "csv"), ("encoding", encoding)]);
    pass_through(&console, &staff, &format!("/v1/statistics/exchanges?{q}")).await
}

async fn replicas_csv(
    console: web::Data<Console>,
    staff: Staff,
    filters: web::Query<Filters>,
    encoding: web::Query<Encoding>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Statistics)?;
    let encoding = encoding_of(&encoding);
    let q = filters.replicas_query(&[("format", "csv"), ("encoding", encoding)]);
    pass_through(&console, &staff, &format!("/v1/statistics/replicas?{q}")).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(day: &str, count: i64) -> ExchangeRow {
        ExchangeRow {
            day: day.into(),
            event: "provision.made".into(),
            affair_code: String::new(),
            procedure_code: String::new(),
            info_code: String::new(),
            outcome: "provided".into(),
            count,
            timed: 0,
            p50_ms: None,
            p95_ms: None,
            max_ms: None,
        }
    }

    #[test]
    fn every_day_gets_a_bar_and_the_largest_fills_the_plot() {
        let rows = [
            row("2026-12-01", 2),
            row("2026-12-01", 3),
            row("2026-12-03", 10),
        ];
        let days = day_totals("2026-12-01", "2026-12-04", &rows);
        assert_eq!(
            days,
            [
                ("2026-12-01".to_string(), 5),
                ("2026-12-02".to_string(), 0),
                ("2026-12-03".to_string(), 10),
                ("2026-12-04".to_string(), 0)
            ]
        );
        let c = chart(days);
        assert_eq!(c.bars.len(), 4);
        assert_eq!(c.bars[2].height, CHART_HEIGHT - CHART_TOP - CHART_BOTTOM);
        assert_eq!(c.bars[0].height * 2, c.bars[2].height);
        assert_eq!(c.bars[1].height, 0);
        assert!(c.bars.iter().all(|b| b.y + b.height == c.baseline));
        assert!(c.bars.iter().all(|b| b.x + b.width <= CHART_WIDTH));
        assert_eq!(c.bars[0].label, "12-01");
    }

    #[test]
    fn queries_carry_only_what_was_given_encoded() {
        let f = Filters {
            from: "2026-12-01".into(),
            event: "a&b".into(),
            ..Filters::default()
        };
        assert_eq!(f.exchanges_query(&[]), "from=2026-12-01&event=a%26b");
        assert_eq!(f.replicas_query(&[("format", "csv")]), "format=csv");
    }
}
