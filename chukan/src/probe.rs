//! `chukan probe URL...`: a smoke check from inside the cluster (the chart's `helm test` hook
//! runs it, since the image has no shell and no curl). Each URL must answer 2xx within the
//! timeout; every URL is tried and reported, so one run shows everything that is down.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::Args;

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// URLs to GET; each must answer 2xx.
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// CA certificate (PEM) to trust for https URLs besides the system's roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Longest wait for each answer, in seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
}

pub async fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(args.timeout_secs));
    if let Some(path) = &args.ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificate", path.display()))?
        {
            client = client.add_root_certificate(cert);
        }
    }
    let client = client.build()?;
    let mut failed = 0;
    for url in &args.urls {
        match client.get(url).send().await {
            Ok(answer) if answer.status().is_success() => {
                println!("ok    {url} {}", answer.status())
            }
            Ok(answer) => {
                failed += 1;
                println!("FAIL  {url} {}", answer.status());
            }
            Err(e) => {
                failed += 1;
                // reqwest's error names the URL and the cause (refused, timeout, TLS).
                println!("FAIL  {url} {e}");
            }
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} URLs did not answer 2xx",
        args.urls.len()
    );
    Ok(())
}
