//! `chukan`: one binary, many targets (like Loki and Mimir).
//!
//! `chukan --target=all` runs every service in one process; `--target=code` runs one. The
//! operator subcommands (`migrate`, `config`, `admin`, `keys`, `nws-sim`, `batch`) share its
//! settings; `replica` is a client of the public API.

mod audit;
mod backup;
mod batch;
mod cli;
mod console;
mod openapi;
mod probe;
mod region;
mod replica;
mod serve;
mod services;
mod stats;
mod tables;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    // actix's System gives the consumer and outbox actors their arbiter; the HTTP workers
    // get their own threads from actix-web.
    let result = actix_rt::System::with_tokio_rt(|| {
        #[allow(clippy::expect_used)]
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
    .block_on(cli::dispatch(args));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chukan: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
