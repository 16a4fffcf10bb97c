//! `chukan batch run <job>`: runs one of provision's batch jobs (夜間バッチ) now, in this
//! process, against the configured database and bus — for an operator catching up after an
//! outage. (The nightly schedule itself runs in the provision process holding the
//! `provision.batch` lease, ADR 0005; no deployment runs this as a CronJob.)
//!
//! Safe beside running servers: each organisation's uploads are applied under its advisory
//! lock, and every chunk commits with its resume point, so a killed run is simply run again.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chukan_config::Settings;
use chukan_core::SystemClock;
use chukan_provision::replica::jobs::{Job, JobReport};
use clap::{Subcommand, builder::PossibleValuesParser, builder::TypedValueParser as _};
use comfy_table::{Cell, Table};

use crate::tables::{number, table};

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Run a job to its end and print what it did; exits non-zero if an organisation failed.
    Run {
        /// replica-uploads (queued registration lists), abolished-datasets
        /// (廃止データセットの一括削除), reconciliations (突合用ファイル), or nightly (all
        /// three, in order).
        #[arg(value_parser = job_parser())]
        job: Job,
    },
}

fn job_parser() -> impl clap::builder::TypedValueParser<Value = Job> {
    PossibleValuesParser::new([
        "replica-uploads",
        "abolished-datasets",
        "reconciliations",
        "nightly",
    ])
    .try_map(|name| Job::parse(&name).ok_or_else(|| format!("unknown job {name:?}")))
}

pub async fn run(settings: Settings, command: &BatchCommand) -> anyhow::Result<()> {
    let BatchCommand::Run { job } = command;
    let job = *job;
    let _telemetry = chukan_telemetry::init("batch", &settings.telemetry)?;
    let ctx = chukan_runtime::build_context(settings, Arc::new(SystemClock)).await?;
    let outbox = chukan_mq::outbox::start(
        ctx.db.clone(),
        chukan_provision::SCHEMA,
        ctx.bus.clone(),
        ctx.settings.amqp.outbox_poll,
    );
    // Uploads are applied right here: the immediate-processing trigger has no listener.
    let (state, _immediate) = chukan_provision::build_state(&ctx, outbox.clone())?;
    let started = Instant::now();
    let result = chukan_provision::replica::jobs::run(&state, job).await;
    // Whatever committed (counts, batch progress) is published before the process leaves,
    // even when the job failed part way.
    let flushed = outbox.flush().await;
    ctx.bus.close().await;
    let report = result.with_context(|| format!("batch job {}", job.name()))?;
    // Not a failure of the job: its changes and their events committed together, and what is
    // left in the outbox is published by the services' relays later.
    let published = flushed.unwrap_or_else(|e| {
        eprintln!(
            "chukan: 警告 (warning): events not published yet stay in the outbox for the \
             services' relays: {e:#}"
        );
        0
    });

    println!("{}", uploads_table(&report));
    println!(
        "{}",
        summary_table(job, &report, published, started.elapsed())
    );
    if !report.failures.is_empty() {
        anyhow::bail!(
            "batch job {}: {} organisation(s) failed: {} (see the log)",
            job.name(),
            report.failures.len(),
            report.failures.join(", ")
        );
    }
    Ok(())
}

fn uploads_table(report: &JobReport) -> Table {
    let mut t = table(&[
        "団体 (tenant)",
        "受付番号 (upload id)",
        "状態 (state)",
        "登録 (registered)",
        "上書き (overwritten)",
        "削除 (deleted)",
        "エラー (rejected)",
        "繰越 (carried)",
    ]);
    for (tenant, o) in &report.uploads {
        t.add_row(vec![
            Cell::new(tenant),
            Cell::new(o.upload_id),
            Cell::new(o.state),
            number(o.registered),
            number(o.overwritten),
            number(o.deleted),
            number(o.rejected),
            number(o.carried),
        ]);
    }
    t
}

fn summary_table(job: Job, report: &JobReport, published: usize, took: Duration) -> Table {
    let mut t = table(&["項目 (item)", "値 (value)"]);
    let failures = if report.failures.is_empty() {
        "-".to_string()
    } else {
        report.failures.join(", ")
    };
    t.add_row(vec![Cell::new("ジョブ (job)"), Cell::new(job.name())]);
    t.add_row(vec![
        Cell::new("処理したアップロード (uploads)"),
        number(report.uploads.len() as i64),
    ]);
    t.add_row(vec![
        Cell::new("廃止データセット削除 (abolished_deleted)"),
        number(report.abolished_deleted),
    ]);
    t.add_row(vec![
        Cell::new("突合用ファイル作成 (reconciliations_made)"),
        number(report.reconciliations_made),
    ]);
    t.add_row(vec![
        Cell::new("終了時に送信したイベント (events flushed at exit)"),
        number(published as i64),
    ]);
    t.add_row(vec![
        Cell::new("失敗した団体 (failures)"),
        Cell::new(failures),
    ]);
    t.add_row(vec![
        Cell::new("所要時間 (took)"),
        Cell::new(format!("{:.1} s", took.as_secs_f64())),
    ]);
    t
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: BatchCommand,
    }

    #[test]
    fn job_names_parse_and_others_are_refused() {
        for (name, job) in [
            ("replica-uploads", Job::ReplicaUploads),
            ("abolished-datasets", Job::AbolishedDatasets),
            ("reconciliations", Job::Reconciliations),
            ("nightly", Job::Nightly),
        ] {
            let cli = Cli::try_parse_from(["batch", "run", name]);
            assert!(
                matches!(cli, Ok(Cli { command: BatchCommand::Run { job: j } }) if j == job),
                "{name}"
            );
        }
        assert!(Cli::try_parse_from(["batch", "run", "weekly"]).is_err());
    }
}
