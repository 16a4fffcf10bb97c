//! 別表第二 as the NWS publishes it (`GET {relay.nws_url}/v1/beppyo2`): which procedure of
//! which affair may ask for which information item. Entry screens use it to offer only the
//! items a procedure may ask (enhancement #10), so an inquiry the NWS would refuse as
//! not-permitted is not even composed.
//!
//! The table changes with the law, not by the minute: it is fetched on demand and kept in
//! memory for [`FRESH_FOR`]. If the NWS cannot be reached, an older copy is still served
//! (a stale table is better than no entry screen); only with no copy at all is the answer 503.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use chukan_core::{Clock, Problem};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use utoipa::ToSchema;

/// How long a fetched table is served without asking the NWS again.
pub const FRESH_FOR: Duration = Duration::from_secs(300);
/// A table fetch is a small GET: fail fast rather than hold the caller.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A code with its Japanese name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct NamedCode {
    pub code: String,
    pub name: String,
}

/// One procedure (事務手続) of 別表第二: its affair (事務) and the items (特定個人情報) it may
/// ask for, in the table's order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Procedure {
    /// 事務手続コード.
    pub code: String,
    /// 事務手続名.
    pub name: String,
    /// The affair the procedure belongs to (事務コード and 事務名).
    pub affair: NamedCode,
    /// 特定個人情報名 the procedure may ask for.
    pub items: Vec<NamedCode>,
}

/// `GET /v1/procedures`: the procedures of 別表第二.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProcedureList {
    pub procedures: Vec<Procedure>,
    /// When this copy was fetched from the NWS.
    pub fetched_at: DateTime<Utc>,
}

/// What the NWS serves (only the parts used here).
#[derive(Deserialize)]
struct NwsTable {
    procedures: Vec<Procedure>,
}

struct Cached {
    list: Arc<ProcedureList>,
    at: Instant,
}

/// The cached table, shared by the route's handlers.
pub struct Procedures {
    http: reqwest::Client,
    url: String,
    clock: Arc<dyn Clock>,
    // Held across a fetch, so concurrent callers of an expired copy cause one fetch.
    cached: Mutex<Option<Cached>>,
}

impl Procedures {
    /// Fetches from `relay.nws_url`, over HTTPS as the relay does (`relay.nws_ca_file`,
    /// `relay.nws_client_cert_file`).
    pub fn new(
        relay: &chukan_config::RelaySettings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Procedures> {
        let tls = chukan_tls::https::ClientTls::nws(relay);
        Ok(Procedures {
            http: chukan_tls::https::client_builder(&tls)?
                .timeout(FETCH_TIMEOUT)
                .build()?,
            url: format!("{}/v1/beppyo2", relay.nws_url.trim_end_matches('/')),
            clock,
            cached: Mutex::new(None),
        })
    }

    /// The table: the cached copy while fresh, else a new fetch, else the stale copy.
    pub async fn list(&self) -> Result<Arc<ProcedureList>, Problem> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| c.at.elapsed() < FRESH_FOR) {
            return Ok(c.list.clone());
        }
        match self.fetch().await {
            Ok(list) => {
                let list = Arc::new(list);
                *cached = Some(Cached {
                    list: list.clone(),
                    at: Instant::now(),
                });
                Ok(list)
            }
            Err(e) => match cached.as_ref() {
                Some(stale) => {
                    tracing::warn!(error = %format!("{e:#}"), "別表第二 not refreshed; serving the older copy");
                    Ok(stale.list.clone())
                }
                None => Err(unavailable(e)),
            },
        }
    }

    async fn fetch(&self) -> anyhow::Result<ProcedureList> {
        let table: NwsTable = self
            .http
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(ProcedureList {
            procedures: table.procedures,
            fetched_at: self.clock.now(),
        })
    }
}

fn unavailable(e: anyhow::Error) -> Problem {
    // Logged here: the answer says only that the table is out of reach.
    tracing::warn!(error = %format!("{e:#}"), "別表第二 could not be fetched from the NWS");
    Problem::new(
        503,
        "procedures-unavailable",
        "Procedures unavailable",
        "情報提供ネットワークシステムから別表第二（事務手続と照会できる特定個人情報）を取得できません。",
        "しばらく待ってから再度実行してください。続く場合は運用窓口に連絡してください。",
    )
    .with_retry_after(30, None)
}
