//! `chukan replica upload`: sends a registration list (副本登録リスト) to the provision API the
//! way a business system does — streamed from disk behind a progress bar, never held in
//! memory — and prints the answer and, with `--wait`, the result report (処理結果).
//!
//! It talks HTTP only: the contract is the public API, so the command works against any
//! deployment an operator can reach, not just the local database.

use std::{
    convert::Infallible,
    io::IsTerminal as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Subcommand;
use comfy_table::{Cell, Table};
use futures_util::TryStreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio_util::io::ReaderStream;

use crate::tables::{number, table};

/// Bytes read from the file per body chunk: large enough to keep the connection busy, small
/// enough that the bar moves smoothly.
const READ_CHUNK: usize = 256 * 1024;

/// Rejections shown after the report; the rest are a page away in the API.
const REJECTIONS_SHOWN: usize = 20;

const SENDING_BAR: &str = "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} \
                           {binary_bytes_per_sec} 残り (ETA) {eta}";
const PROCESSING_BAR: &str = "{msg} [{bar:30}] {pos}/{len} 件 (entries) 残り (ETA) {eta}";

#[derive(Debug, Subcommand)]
pub enum ReplicaCommand {
    /// Upload a registration list file (XML) and show what the server made of it.
    Upload(UploadArgs),
}

#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// The registration list (SPIRegistrationDeleteList XML).
    pub file: PathBuf,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Wait until the upload is processed (done, or carried to the next night) and print the
    /// result report (処理結果).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how often to ask for the report, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..))]
    pub poll_ms: u64,
    /// With --wait: give up (exit non-zero) after this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout_secs: u64,
    /// No progress bars (CI logs); they are also hidden when stderr is not a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// Where the API is and how to log in to it.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Base URL of the chukan API.
    #[arg(long, env = "CHUKAN_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Base URL of the admin service's token endpoint, when it is not --url.
    #[arg(long, env = "CHUKAN_AUTH_URL")]
    pub auth_url: Option<String>,
    /// Access token (JWT) of a system client or staff member.
    #[arg(
        long,
        env = "CHUKAN_TOKEN",
        hide_env_values = true,
        value_parser = secret,
        conflicts_with = "client_id",
        required_unless_present = "client_id"
    )]
    pub token: Option<SecretString>,
    /// System client id (`<org code>.<hex>`): log in with the client-credentials grant.
    #[arg(long, requires = "client_secret_env")]
    pub client_id: Option<String>,
    /// Name of the environment variable holding the client secret (never on the command
    /// line, where `ps` would show it).
    #[arg(long, requires = "client_id")]
    pub client_secret_env: Option<String>,
    /// PEM CA bundle the API's certificate must chain to (an https --url served by a private
    /// CA); without it the system's roots are trusted.
    #[arg(long, env = "CHUKAN_CA_FILE")]
    pub ca: Option<String>,
}

fn secret(s: &str) -> Result<SecretString, Infallible> {
    Ok(SecretString::from(s))
}

/// An error answer (application/problem+json), as far as the command needs it.
#[derive(Debug, Default, Deserialize)]
struct Problem {
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    code: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    available_at: Option<String>,
}

/// The 202 answer to an upload.
#[derive(Debug, Deserialize)]
struct UploadAccepted {
    upload_id: String,
    state: String,
    entries: i64,
    precheck_rejected: i64,
    bytes: i64,
    processing: String,
}

/// The result report (処理結果) of an upload.
#[derive(Debug, Deserialize)]
struct UploadReport {
    state: String,
    entries: i64,
    registered: i64,
    overwritten: i64,
    deleted: i64,
    carried: i64,
    rejected: i64,
}

impl UploadReport {
    fn settled(&self) -> bool {
        matches!(self.state.as_str(), "done" | "carried")
    }

    fn processed(&self) -> i64 {
        self.registered + self.overwritten + self.deleted + self.rejected
    }
}

#[derive(Debug, Deserialize)]
struct Rejection {
    ordinal: i64,
    record_id: String,
    code: String,
    detail: String,
    action: String,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
}

pub async fn run(command: &ReplicaCommand) -> anyhow::Result<()> {
    match command {
        ReplicaCommand::Upload(args) => upload(args).await,
    }
}

/// A path on the API (`base` without a trailing slash).
fn endpoint(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// Passes a successful answer through; prints an error answer's code, detail and action to
/// stderr and fails with its code.
async fn checked(res: reqwest::Response, what: &str) -> anyhow::Result<reqwest::Response> {
    let status = res.status();
    if status.is_success() {
        return Ok(res);
    }
    let body = res.text().await.unwrap_or_default();
    let problem = serde_json::from_str::<Problem>(&body)
        .ok()
        .filter(|p| !p.code.is_empty());
    match problem {
        Some(p) => {
            eprintln!(
                "{what}: エラー (error) HTTP {}",
                p.status.unwrap_or(status.as_u16())
            );
            eprintln!("  code:   {}", p.code);
            if !p.title.is_empty() {
                eprintln!("  title:  {}", p.title);
            }
            eprintln!("  detail: {}", p.detail);
            eprintln!("  action: {}", p.action);
            if let Some(at) = p.available_at {
                eprintln!("  available_at: {at}");
            }
            anyhow::bail!("{what} failed: {} (HTTP {})", p.code, status.as_u16())
        }
        None => {
            let excerpt: String = body.chars().take(500).collect();
            eprintln!("{what}: HTTP {status}");
            if !excerpt.trim().is_empty() {
                eprintln!("  {excerpt}");
            }
            anyhow::bail!("{what} failed: HTTP {}", status.as_u16())
        }
    }
}

/// The bearer token: given, or obtained with the client-credentials grant.
async fn token(http: &reqwest::Client, server: &ServerArgs) -> anyhow::Result<SecretString> {
    if let Some(token) = &server.token {
        return Ok(token.clone());
    }
    let (Some(client_id), Some(secret_env)) = (&server.client_id, &server.client_secret_env) else {
        anyhow::bail!("give --token (or $CHUKAN_TOKEN), or --client-id with --client-secret-env");
    };
    let secret = SecretString::from(
        std::env::var(secret_env)
            .with_context(|| format!("client secret expected in ${secret_env}"))?,
    );
    let base = server.auth_url.as_deref().unwrap_or(&server.url);
    let res = http
        .post(endpoint(base, "/v1/auth/token"))
        .json(&serde_json::json!({
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret.expose_secret(),
        }))
        .send()
        .await
        .with_context(|| format!("token request to {base}"))?;
    let answer: TokenAnswer = checked(res, "ログイン (token)")
        .await?
        .json()
        .await
        .context("token answer")?;
    Ok(SecretString::from(answer.access_token))
}

fn bar(show: bool, len: u64, template: &str) -> anyhow::Result<ProgressBar> {
    if !show {
        return Ok(ProgressBar::hidden());
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    Ok(bar)
}

async fn upload(args: &UploadArgs) -> anyhow::Result<()> {
    let ca = args.server.ca.as_deref().unwrap_or_default();
    let http =
        chukan_tls::https::client_builder(&chukan_tls::https::ClientTls::ca_only("--ca", ca))?
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("HTTP client")?;
    let token = token(&http, &args.server).await?;
    let show = !args.no_progress && std::io::stderr().is_terminal();

    let accepted = send_file(&http, &args.server.url, &token, &args.file, show).await?;
    println!("{}", accepted_table(&accepted));
    if !args.wait {
        return Ok(());
    }
    if accepted.processing == "nightly" {
        eprintln!(
            "夜間バッチ (nightly batch) で処理されるまで待ちます (waiting for the nightly batch)…"
        );
    }
    let report = wait_report(&http, &args.server.url, &token, &accepted, args, show).await?;
    println!("{}", report_table(&report));
    if report.rejected > 0 {
        let rejections = first_rejections(&http, &args.server.url, &token, &accepted).await?;
        println!("{}", rejections_table(&rejections));
        if report.rejected > rejections.len() as i64 {
            println!(
                "… 他 {} 件 (more): GET /v1/replica-uploads/{}/rejections",
                report.rejected - rejections.len() as i64,
                accepted.upload_id
            );
        }
    }
    Ok(())
}

/// Streams the file as the request body, advancing the bar as chunks are handed to the
/// connection.
async fn send_file(
    http: &reqwest::Client,
    base: &str,
    token: &SecretString,
    path: &Path,
    show: bool,
) -> anyhow::Result<UploadAccepted> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("open {}", path.display()))?;
    let total = file
        .metadata()
        .await
        .with_context(|| format!("size of {}", path.display()))?
        .len();
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut url = reqwest::Url::parse(&endpoint(base, "/v1/replica-uploads"))
        .with_context(|| format!("API URL {base:?}"))?;
    if !file_name.is_empty() {
        url.query_pairs_mut().append_pair("file_name", &file_name);
    }

    let progress = bar(show, total, SENDING_BAR)?;
    progress.set_message("送信中 (sending)");
    let ticks = progress.clone();
    let body = ReaderStream::with_capacity(file, READ_CHUNK).inspect_ok(move |chunk| {
        ticks.inc(chunk.len() as u64);
        if ticks.position() >= total {
            // The server checks the whole list before it answers.
            ticks.set_message("確認待ち (server checking)");
        }
    });
    let sent = http
        .post(url)
        .bearer_auth(token.expose_secret())
        .header(reqwest::header::CONTENT_TYPE, "application/xml")
        .header(reqwest::header::CONTENT_LENGTH, total)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    progress.finish_and_clear();
    let res = sent.with_context(|| format!("upload of {} to {base}", path.display()))?;
    checked(res, "アップロード (upload)")
        .await?
        .json()
        .await
        .context("upload answer")
}

async fn get_report(
    http: &reqwest::Client,
    base: &str,
    token: &SecretString,
    id: &str,
) -> anyhow::Result<UploadReport> {
    let res = http
        .get(endpoint(base, &format!("/v1/replica-uploads/{id}")))
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .context("result report request")?;
    checked(res, "処理結果 (report)")
        .await?
        .json()
        .await
        .context("result report")
}

async fn wait_report(
    http: &reqwest::Client,
    base: &str,
    token: &SecretString,
    accepted: &UploadAccepted,
    args: &UploadArgs,
    show: bool,
) -> anyhow::Result<UploadReport> {
    let until = Instant::now() + Duration::from_secs(args.timeout_secs);
    let progress = bar(
        show,
        u64::try_from(accepted.entries).unwrap_or(0),
        PROCESSING_BAR,
    )?;
    progress.set_message("処理待ち (waiting)");
    loop {
        let report = get_report(http, base, token, &accepted.upload_id).await?;
        progress.set_position(u64::try_from(report.processed()).unwrap_or(0));
        if report.state == "processing" {
            progress.set_message("処理中 (processing)");
        }
        if report.settled() {
            progress.finish_and_clear();
            return Ok(report);
        }
        if Instant::now() >= until {
            progress.finish_and_clear();
            eprintln!("{}", report_table(&report));
            anyhow::bail!(
                "upload {} not processed within {} s (state {})",
                accepted.upload_id,
                args.timeout_secs,
                report.state
            );
        }
        tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
    }
}

async fn first_rejections(
    http: &reqwest::Client,
    base: &str,
    token: &SecretString,
    accepted: &UploadAccepted,
) -> anyhow::Result<Vec<Rejection>> {
    let res = http
        .get(endpoint(
            base,
            &format!(
                "/v1/replica-uploads/{}/rejections?limit={REJECTIONS_SHOWN}",
                accepted.upload_id
            ),
        ))
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .context("rejections request")?;
    checked(res, "エラー明細 (rejections)")
        .await?
        .json()
        .await
        .context("rejections")
}

fn accepted_table(a: &UploadAccepted) -> Table {
    let mut t = table(&[
        "受付番号 (upload id)",
        "状態 (state)",
        "件数 (entries)",
        "事前確認エラー (precheck rejected)",
        "サイズ (bytes)",
        "処理方式 (processing)",
    ]);
    let processing = match a.processing.as_str() {
        "nightly" => "夜間バッチ (nightly)",
        "immediate" => "即時 (immediate)",
        other => other,
    };
    t.add_row(vec![
        Cell::new(&a.upload_id),
        Cell::new(&a.state),
        number(a.entries),
        number(a.precheck_rejected),
        number(a.bytes),
        Cell::new(processing),
    ]);
    t
}

fn report_table(r: &UploadReport) -> Table {
    let mut t = table(&[
        "状態 (state)",
        "件数 (entries)",
        "登録 (registered)",
        "上書き (overwritten)",
        "削除 (deleted)",
        "繰越 (carried)",
        "エラー (rejected)",
    ]);
    t.add_row(vec![
        Cell::new(&r.state),
        number(r.entries),
        number(r.registered),
        number(r.overwritten),
        number(r.deleted),
        number(r.carried),
        number(r.rejected),
    ]);
    t
}

fn rejections_table(list: &[Rejection]) -> Table {
    let mut t = table(&[
        "位置 (ordinal)",
        "レコード識別番号 (record id)",
        "理由コード (code)",
        "理由 (detail)",
        "次の操作 (action)",
    ]);
    for r in list {
        t.add_row(vec![
            number(r.ordinal),
            Cell::new(&r.record_id),
            Cell::new(&r.code),
            Cell::new(&r.detail),
            Cell::new(&r.action),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_carry_japanese_and_english_headings() {
        let r = UploadReport {
            state: "done".into(),
            entries: 3,
            registered: 2,
            overwritten: 0,
            deleted: 0,
            carried: 0,
            rejected: 1,
        };
        let text = report_table(&r).to_string();
        assert!(text.contains("登録 (registered)"), "{text}");
        assert!(text.contains("エラー (rejected)"), "{text}");
    }

    #[test]
    fn a_problem_answer_keeps_its_code_detail_and_action() {
        let p: Problem = serde_json::from_str(
            r#"{"type":"https://chukan.dev/problems/x","title":"T","status":422,
                "code":"malformed-registration-list","detail":"d","action":"a"}"#,
        )
        .unwrap_or_default();
        assert_eq!(p.code, "malformed-registration-list");
        assert_eq!((p.detail.as_str(), p.action.as_str()), ("d", "a"));
    }

    #[test]
    fn progress_templates_parse() {
        for template in [SENDING_BAR, PROCESSING_BAR] {
            assert!(bar(true, 10, template).is_ok(), "{template}");
        }
    }

    #[test]
    fn endpoints_ignore_a_trailing_slash() {
        assert_eq!(
            endpoint("http://h:1/", "/v1/replica-uploads"),
            "http://h:1/v1/replica-uploads"
        );
    }
}
