//! What the load generators share.

pub mod cpu;
pub mod echo;
pub mod ops;
pub mod spend;

use anyhow::Context as _;

/// (VmHWM, VmRSS) in KiB of a process, from /proc: its peak and current resident memory.
pub fn read_rss(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} not in /proc/{pid}/status"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// A system client's access token (client-credentials grant).
pub async fn client_token(
    http: &reqwest::Client,
    api: &str,
    client_id: &str,
    client_secret: &str,
) -> anyhow::Result<String> {
    let res: serde_json::Value = http
        .post(format!("{api}/v1/auth/token"))
        .json(&serde_json::json!({
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    res["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no access_token in the token response")
}

/// GETs `{api}{path_of(id)}` for every id, `concurrency` at a time, in order; `None` where
/// the read failed (outside any measured window).
pub async fn fetch_all(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    ids: &[String],
    path_of: impl Fn(&str) -> String,
    concurrency: usize,
) -> Vec<Option<serde_json::Value>> {
    use futures_util::StreamExt as _;
    futures_util::stream::iter(ids.iter().map(|id| {
        let req = http
            .get(format!("{api}{}", path_of(id)))
            .bearer_auth(token)
            .send();
        async move { req.await.ok()?.json::<serde_json::Value>().await.ok() }
    }))
    .buffered(concurrency)
    .collect()
    .await
}
