//! REST routes of the audit service (情報提供等記録の検索と証明) for the tenant's system
//! administrators and business staff, and their OpenAPI description ([`ApiDoc`]).

use actix_web::{HttpResponse, web};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use chukan_auth::Caller;
use chukan_core::{Problem, problem::ProtectedRouteProblems};
use chukan_db::OrProblem as _;
use chukan_merkle::{Hash, Proof};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::{AuditState, searchable, store};

// The deprecated query form is still described, marked deprecated, for one release.
#[allow(deprecated)]
#[derive(OpenApi)]
#[openapi(
    paths(search_records_by_body, search_records, record_proof, tree_head, consistency, change_disclosure),
    components(schemas(RecordQuery, RecordItem, RecordPage, TreeHead, InclusionProof, ConsistencyProof, DisclosureChange, DisclosureChanged, Problem)),
    tags((
        name = "audit",
        description = "情報提供等記録 (audit records): 照会・提供の記録を改ざん検知可能な追記専用ログ（Merkle tree, RFC 9162）に保存し、検索・包含証明・一貫性証明を返します。"
    ))
)]
pub struct ApiDoc;

// Who may call what is each operation's `security` (the gate in chukan-auth enforces it):
// records are read by administrators (情報提供等記録管理) and staff; a disclosure is changed
// by people only (never a business system), so every change has a person behind it, named
// in the change record.

// The deprecated query form is still served for one release (docs/api.md).
#[allow(deprecated)]
pub fn routes(cfg: &mut web::ServiceConfig, state: web::Data<AuditState>) {
    cfg.app_data(state)
        .route("/v1/records", web::get().to(search_records))
        .route("/v1/records/search", web::post().to(search_records_by_body))
        .route("/v1/records/tree-head", web::get().to(tree_head))
        .route("/v1/records/consistency", web::get().to(consistency))
        .route("/v1/records/{record_id}/proof", web::get().to(record_proof))
        .route(
            "/v1/records/{record_id}/disclosure",
            web::post().to(change_disclosure),
        );
}

fn no_tree_head() -> Problem {
    Problem::new(
        409,
        "no-tree-head",
        "No signed tree head yet",
        "まだ署名済みツリーヘッドがありません。",
        "記録の登録後、署名（既定で10秒ごと）を待ってから再度取得してください。",
    )
}

/// The record came after the newest signed tree head: no head proves it yet.
fn not_yet_signed() -> Problem {
    Problem::new(
        409,
        "record-not-yet-signed",
        "Record not yet in a signed tree head",
        "この記録はまだ署名済みツリーヘッドに含まれていません。",
        "次の署名（既定で10秒ごと）の後に再度取得してください。",
    )
}

fn size_out_of_range() -> Problem {
    Problem::new(
        422,
        "tree-size-out-of-range",
        "Tree size out of range",
        "指定されたツリーサイズはログの範囲外です。",
        "tree_size（from, to）は 1 以上、現在のログの件数以下で指定してください。",
    )
}

/// Search filters: as a query string (deprecated, the addressee would be in the URL) or as the
/// body of `POST /v1/records/search`.
#[derive(Debug, Deserialize, IntoParams, ToSchema)]
pub struct RecordQuery {
    /// 団体内統合宛名番号 (looked up by blind index).
    #[param(value_type = Option<chukan_core::ids::AddresseeNo>)]
    #[schema(value_type = Option<chukan_core::ids::AddresseeNo>)]
    pub addressee: Option<String>,
    /// Records at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Records before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// 相手機関: inquirer or provider organisation code.
    pub counterpart: Option<String>,
    /// 事務手続コード.
    pub procedure_code: Option<String>,
    /// 特定個人情報名コード.
    pub info_code: Option<String>,
    /// 1..=500 (default 100).
    #[serde(default, deserialize_with = "chukan_core::json_int::option_i64")]
    pub limit: Option<i64>,
    /// The last `seq` of the previous page.
    #[serde(default, deserialize_with = "chukan_core::json_int::option_i64")]
    pub after: Option<i64>,
}

/// One 情報提供等記録 (without the addressee number).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordItem {
    /// Leaf index in the tenant's log.
    pub seq: i64,
    pub record_id: Uuid,
    pub event: String,
    pub inquirer_org: String,
    pub provider_org: String,
    pub affair_code: String,
    pub procedure_code: String,
    pub info_code: String,
    /// 処理通番.
    pub serial_no: String,
    /// 枝番.
    pub branch_no: i32,
    pub permit_id: String,
    /// 照会依頼日時.
    pub requested_at: Option<DateTime<Utc>>,
    /// 提供日時.
    pub provided_at: Option<DateTime<Utc>>,
    /// 不開示, as recorded in this leaf (for a change record: the new setting).
    pub non_disclosure: bool,
    /// 不開示 now: the latest `disclosure.changed` record for this record wins.
    pub non_disclosure_now: bool,
    pub outcome: String,
    pub at: DateTime<Utc>,
    /// Leaf hash, hex.
    pub leaf_hash: String,
    /// For a `disclosure.changed` record: the record it changes.
    pub target_record_id: Option<Uuid>,
    /// For a `disclosure.changed` record: 「不開示設定変更」.
    pub reason: String,
    /// For a change made by hand: the user id (token subject) who made it.
    pub actor: String,
    /// `verified`: every value above is what the sealed leaf says. Otherwise the row was
    /// changed behind the service: `column-differs:<column>` (the values shown are the
    /// leaf's), or `leaf-does-not-open`, `leaf-undecodable`, `record-id-differs`,
    /// `leaf-hash-differs` (the values shown are the stored columns, which cannot be
    /// trusted). Run `chukan audit verify` and call the help desk.
    pub integrity: String,
}

/// A change of a record's non-disclosure setting (enhancement #9).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DisclosureChange {
    /// true: 不開示 (hide from the resident portal); false: 開示.
    pub non_disclosure: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DisclosureChanged {
    /// The new record (event `disclosure.changed`) that carries the change.
    pub change_record_id: Uuid,
    /// Its leaf index.
    pub seq: i64,
    pub target_record_id: Uuid,
    pub non_disclosure: bool,
    /// 「不開示設定変更」.
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordPage {
    pub items: Vec<RecordItem>,
    /// Pass as `after` for the next (older) page.
    pub next_after: Option<i64>,
}

/// A signed tree head. The signature is Ed25519 over the UTF-8 text
/// `chukan-audit-sth/v1|{tenant}|{tree_size}|{root_hash}|{signed_at_ms}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TreeHead {
    pub tree_size: i64,
    /// Root hash, lower-case hex.
    pub root_hash: String,
    pub signed_at: DateTime<Utc>,
    pub signed_at_ms: i64,
    pub kid: String,
    /// Signature, standard base64.
    pub signature: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InclusionProof {
    pub record_id: Uuid,
    pub leaf_index: i64,
    pub tree_size: i64,
    /// Leaf hash, hex.
    pub leaf_hash: String,
    /// Audit path (RFC 9162 §2.1.3), leaf level first, hex.
    pub path: Vec<String>,
    /// The signed tree head of `tree_size` (absent if none was signed at that size).
    pub tree_head: Option<TreeHead>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: i64,
    pub to: i64,
    /// Consistency proof (RFC 9162 §2.1.4), hex.
    pub proof: Vec<String>,
    pub from_tree_head: Option<TreeHead>,
    pub to_tree_head: Option<TreeHead>,
}

impl From<store::TreeHeadRow> for TreeHead {
    fn from(h: store::TreeHeadRow) -> Self {
        TreeHead {
            tree_size: h.size,
            root_hash: hex::encode(&h.root),
            signed_at: h.signed_at,
            signed_at_ms: h.signed_at.timestamp_millis(),
            kid: h.kid,
            signature: STANDARD.encode(&h.signature),
        }
    }
}

/// `GET /v1/records` → records matching the filters, newest first.
#[utoipa::path(
    get,
    path = "/v1/records",
    tag = "audit",
    operation_id = "searchAuditRecords",
    summary = "情報提供等記録の検索 (deprecated: POST /v1/records/search)",
    description = "非推奨: addressee（宛名番号）がURLに載り、プロキシやアクセスログに記録されます。POST /v1/records/search を使ってください。次のリリースで削除します。",
    params(RecordQuery),
    responses(
        (status = 200, description = "記録の一覧", body = RecordPage),
        (status = 400, description = "クエリの形式が不正です (invalid-query, invalid-field)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin", "business_staff"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
#[deprecated = "the addressee travels in the URL: use POST /v1/records/search"]
async fn search_records(
    caller: Caller,
    state: web::Data<AuditState>,
    query: web::Query<RecordQuery>,
) -> Result<HttpResponse, Problem> {
    search(&caller, &state, query.into_inner()).await
}

/// `POST /v1/records/search` → records matching the filters, newest first.
#[utoipa::path(
    post,
    path = "/v1/records/search",
    tag = "audit",
    operation_id = "searchAuditRecordsByBody",
    summary = "情報提供等記録の検索 (search audit records)",
    description = "宛名番号（ブラインドインデックスで検索）・期間・相手機関・事務手続・特定個人情報名で絞り込み、新しい順に返します。次のページは `next_after` を `after` に指定します。\
条件は本文で送ります（URLに個人の番号を載せないため）。",
    request_body(content = RecordQuery, content_type = "application/json"),
    responses(
        (status = 200, description = "記録の一覧", body = RecordPage),
        (status = 400, description = "項目の形式が不正です (invalid-field, malformed-json, invalid-character)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin", "business_staff"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn search_records_by_body(
    caller: Caller,
    state: web::Data<AuditState>,
    body: web::Json<RecordQuery>,
) -> Result<HttpResponse, Problem> {
    search(&caller, &state, body.into_inner()).await
}

async fn search(
    caller: &Caller,
    state: &AuditState,
    q: RecordQuery,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant();
    if q.addressee
        .as_deref()
        .is_some_and(|a| chukan_core::ids::AddresseeNo::parse(a).is_err())
    {
        return Err(Problem::invalid(
            "addressee は15桁以内の数字（団体内統合宛名番号）です。",
            "addressee の値を確認してください。",
        ));
    }
    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, tenant)
        .await
        .or_problem("keys")?;
    let bidx = q.addressee.as_deref().map(|a| keys.blind_index(a));
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let search = store::Search {
        addressee_bidx: bidx.as_deref(),
        from: q.from,
        to: q.to,
        counterpart: q.counterpart.as_deref(),
        procedure_code: q.procedure_code.as_deref(),
        info_code: q.info_code.as_deref(),
        after: q.after,
        limit,
    };
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let found = store::search(&tx, &search).await.or_problem("search")?;
    tx.commit().await.or_problem("commit")?;
    let items: Vec<RecordItem> = found
        .iter()
        .map(|f| record_item(&keys, tenant, f))
        .collect();
    let next_after = (items.len() as i64 == limit)
        .then(|| items.last().map(|i| i.seq))
        .flatten();
    Ok(HttpResponse::Ok().json(RecordPage { items, next_after }))
}

/// One search hit as staff see it: the values of its opened leaf, and whether its row (and
/// its latest change) matched that leaf. A row that does not is reported.
fn record_item(keys: &chukan_crypto::TenantKeys, tenant: &str, found: &store::Found) -> RecordItem {
    let row = &found.row;
    let report = |r: &store::RecordRow, why| {
        searchable::report_untrusted(tenant, r.seq, &r.record_id, why, "search");
    };
    let opened = match row.open(keys, tenant) {
        Ok(opened) => opened,
        Err(why) => {
            report(row, why);
            return stored_item(found, why.reason().to_owned());
        }
    };
    let mut integrity = match opened.trusted() {
        Ok(()) => "verified".to_owned(),
        Err(why) => {
            report(row, why);
            format!("column-differs:{}", why.column().unwrap_or_default())
        }
    };
    let r = &opened.record;
    let mut non_disclosure_now = r.non_disclosure;
    if let Some(change) = &found.latest_change {
        match change.open(keys, tenant) {
            Ok(c) => {
                if let Err(why) = c.trusted() {
                    report(change, why);
                    if integrity == "verified" {
                        integrity = format!("change-{}", why.reason());
                    }
                }
                // A change counts only if its own leaf names this record.
                if c.record.target_record_id == r.record_id {
                    non_disclosure_now = c.record.non_disclosure;
                }
            }
            Err(why) => {
                report(change, why);
                if integrity == "verified" {
                    integrity = format!("change-{}", why.reason());
                }
            }
        }
    }
    RecordItem {
        seq: row.seq,
        record_id: row.record_id,
        event: r.event.clone(),
        inquirer_org: r.inquirer_org.clone(),
        provider_org: r.provider_org.clone(),
        affair_code: r.affair_code.clone(),
        procedure_code: r.procedure_code.clone(),
        info_code: r.info_code.clone(),
        serial_no: r.serial_no.clone(),
        branch_no: r.branch_no,
        permit_id: r.permit_id.clone(),
        requested_at: crate::append::time(r.requested_at_ms),
        provided_at: crate::append::time(r.provided_at_ms),
        non_disclosure: r.non_disclosure,
        non_disclosure_now,
        outcome: r.outcome.clone(),
        at: crate::append::time(r.at_ms).unwrap_or(row.copy.at),
        leaf_hash: hex::encode(opened.hash),
        target_record_id: Uuid::parse_str(&r.target_record_id).ok(),
        reason: r.reason.clone(),
        actor: r.actor.clone(),
        integrity,
    }
}

/// A hit whose leaf cannot be used: its stored columns, marked with why.
fn stored_item(found: &store::Found, integrity: String) -> RecordItem {
    let (row, c) = (&found.row, &found.row.copy);
    RecordItem {
        seq: row.seq,
        record_id: row.record_id,
        event: c.event.clone(),
        inquirer_org: c.inquirer_org.clone(),
        provider_org: c.provider_org.clone(),
        affair_code: c.affair_code.clone(),
        procedure_code: c.procedure_code.clone(),
        info_code: c.info_code.clone(),
        serial_no: c.serial_no.clone(),
        branch_no: c.branch_no,
        permit_id: c.permit_id.clone(),
        requested_at: c.requested_at,
        provided_at: c.provided_at,
        non_disclosure: c.non_disclosure,
        non_disclosure_now: found
            .latest_change
            .as_ref()
            .map_or(c.non_disclosure, |ch| ch.copy.non_disclosure),
        outcome: c.outcome.clone(),
        at: c.at,
        leaf_hash: hex::encode(&row.leaf_hash),
        target_record_id: c.target_record_id,
        reason: c.reason.clone(),
        actor: c.actor.clone(),
        integrity,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ProofQuery {
    /// Tree size to prove against (1 to the log's size); default: the latest signed tree head.
    #[param(minimum = 1)]
    pub tree_size: Option<i64>,
}

/// Fetches a proof's nodes in one query and hashes them together.
async fn assemble(
    tx: &deadpool_postgres::Transaction<'_>,
    proof: &Proof,
) -> Result<Vec<String>, Problem> {
    let nodes = store::nodes(tx, &proof.nodes()).await.or_problem("nodes")?;
    let hashes: Vec<Hash> = proof
        .assemble(|id| nodes.get(&id).copied())
        .or_problem("assemble")?;
    Ok(hashes.iter().map(hex::encode).collect())
}

/// `GET /v1/records/{record_id}/proof` → the record's inclusion proof.
#[utoipa::path(
    get,
    path = "/v1/records/{record_id}/proof",
    tag = "audit",
    operation_id = "auditInclusionProof",
    summary = "包含証明 (inclusion proof)",
    description = "記録が署名済みツリーヘッドのツリーに含まれることの証明（RFC 9162 §2.1.3）を返します。tree_size を省略すると最新の署名済みツリーヘッドに対する証明です。",
    params(("record_id" = Uuid, Path, description = "記録ID"), ProofQuery),
    responses(
        (status = 200, description = "包含証明", body = InclusionProof),
        (status = 404, description = "記録がありません (not-found)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "署名済みツリーヘッドがまだないか (no-tree-head)、記録がまだ署名済みツリーヘッドに含まれていません (record-not-yet-signed)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "ツリーサイズが範囲外です (tree-size-out-of-range)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin", "business_staff"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn record_proof(
    caller: Caller,
    state: web::Data<AuditState>,
    record_id: web::Path<Uuid>,
    query: web::Query<ProofQuery>,
) -> Result<HttpResponse, Problem> {
    let record_id = record_id.into_inner();
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant())
        .await
        .or_problem("begin")?;
    // The leaf, the head and (when a size is asked for) the log size go out together:
    // tokio-postgres pipelines queries issued at once on one connection, one round trip.
    let (leaf, head, log) = futures_util::join!(
        store::leaf_of(&tx, record_id),
        store::tree_head(&tx, query.tree_size),
        async {
            match query.tree_size {
                Some(_) => store::log_size(&tx).await.map(Some),
                None => Ok(None),
            }
        },
    );
    let Some((seq, leaf_hash)) = leaf.or_problem("leaf")? else {
        return Err(Problem::not_found("情報提供等記録"));
    };
    let head = head.or_problem("tree head")?;
    let (size, head) = match (query.tree_size, log.or_problem("size")?) {
        (Some(size), Some(log)) => {
            if size < 1 || size > log {
                return Err(size_out_of_range());
            }
            (size, head)
        }
        _ => {
            let head = head.ok_or_else(no_tree_head)?;
            if seq >= head.size {
                return Err(not_yet_signed());
            }
            (head.size, Some(head))
        }
    };
    let proof = Proof::inclusion(
        u64::try_from(seq).unwrap_or(u64::MAX),
        u64::try_from(size).unwrap_or_default(),
    )
    .map_err(|_| size_out_of_range())?;
    let path = assemble(&tx, &proof).await?;
    tx.commit().await.or_problem("commit")?;
    Ok(HttpResponse::Ok().json(InclusionProof {
        record_id,
        leaf_index: seq,
        tree_size: size,
        leaf_hash: hex::encode(&leaf_hash),
        path,
        tree_head: head.map(TreeHead::from),
    }))
}

/// `GET /v1/records/tree-head` → the latest signed tree head.
#[utoipa::path(
    get,
    path = "/v1/records/tree-head",
    tag = "audit",
    operation_id = "auditTreeHead",
    summary = "署名済みツリーヘッド (signed tree head)",
    description = "テナントのログの最新の署名済みツリーヘッド（件数、ルートハッシュ、署名時刻、鍵ID、Ed25519署名）を返します。",
    responses(
        (status = 200, description = "署名済みツリーヘッド", body = TreeHead),
        (status = 409, description = "署名済みツリーヘッドがまだありません (no-tree-head)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin", "business_staff"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn tree_head(caller: Caller, state: web::Data<AuditState>) -> Result<HttpResponse, Problem> {
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant())
        .await
        .or_problem("begin")?;
    let head = store::tree_head(&tx, None)
        .await
        .or_problem("tree head")?
        .ok_or_else(no_tree_head)?;
    tx.commit().await.or_problem("commit")?;
    Ok(HttpResponse::Ok().json(TreeHead::from(head)))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ConsistencyQuery {
    /// The older tree size (≥ 1).
    #[param(minimum = 1)]
    pub from: i64,
    /// The newer tree size (≥ from, ≤ the log's size).
    #[param(minimum = 1)]
    pub to: i64,
}

/// `GET /v1/records/consistency` → the consistency proof between two tree sizes.
#[utoipa::path(
    get,
    path = "/v1/records/consistency",
    tag = "audit",
    operation_id = "auditConsistencyProof",
    summary = "一貫性証明 (consistency proof)",
    description = "サイズ from のツリーがサイズ to のツリーの先頭部分であること（追記のみで改ざんがないこと）の証明（RFC 9162 §2.1.4）を返します。",
    params(ConsistencyQuery),
    responses(
        (status = 200, description = "一貫性証明", body = ConsistencyProof),
        (status = 400, description = "クエリの形式が不正です (invalid-query)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "ツリーサイズが範囲外です (tree-size-out-of-range)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin", "business_staff"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn consistency(
    caller: Caller,
    state: web::Data<AuditState>,
    query: web::Query<ConsistencyQuery>,
) -> Result<HttpResponse, Problem> {
    let ConsistencyQuery { from, to } = query.into_inner();
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant())
        .await
        .or_problem("begin")?;
    let log = store::log_size(&tx).await.or_problem("size")?;
    if from < 1 || from > to || to > log {
        return Err(size_out_of_range());
    }
    let start = store::checkpoint(&tx)
        .await
        .or_problem("checkpoint")?
        .map_or(0, |c| c.size);
    if from < start {
        return Err(Problem::new(
            422,
            "before-checkpoint",
            "Tree size before the retention checkpoint",
            "指定されたツリーサイズの記録は保存期間を過ぎて削除済みのため、一貫性証明を作成できません。",
            "from には保存期間チェックポイント以降のツリーサイズ（最新の署名済みツリーヘッドなど）を指定してください。",
        ));
    }
    let proof = Proof::consistency(
        u64::try_from(from).unwrap_or_default(),
        u64::try_from(to).unwrap_or_default(),
    )
    .map_err(|_| size_out_of_range())?;
    let hashes = assemble(&tx, &proof).await?;
    let from_head = store::tree_head(&tx, Some(from))
        .await
        .or_problem("tree head")?;
    let to_head = store::tree_head(&tx, Some(to))
        .await
        .or_problem("tree head")?;
    tx.commit().await.or_problem("commit")?;
    Ok(HttpResponse::Ok().json(ConsistencyProof {
        from,
        to,
        proof: hashes,
        from_tree_head: from_head.map(TreeHead::from),
        to_tree_head: to_head.map(TreeHead::from),
    }))
}

/// `POST /v1/records/{record_id}/disclosure` → appends a disclosure change record.
#[utoipa::path(
    post,
    path = "/v1/records/{record_id}/disclosure",
    tag = "audit",
    operation_id = "changeAuditRecordDisclosure",
    summary = "不開示設定変更 (change a record's disclosure)",
    description = "記録の不開示設定を変更します。元の記録は変更せず、変更理由「不開示設定変更」の変更記録（event `disclosure.changed`）をログに追記します。最新の変更記録が有効です。",
    params(("record_id" = Uuid, Path, description = "変更する記録のID")),
    request_body = DisclosureChange,
    responses(
        (status = 201, description = "変更記録を追記しました", body = DisclosureChanged),
        (status = 404, description = "記録がありません (not-found)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "既にその設定です (disclosure-unchanged)、又は記録が封印された内容と一致しません (record-does-not-verify)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "変更記録は対象にできません (not-an-exchange-record)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin", "business_staff"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn change_disclosure(
    caller: Caller,
    state: web::Data<AuditState>,
    record_id: web::Path<Uuid>,
    body: web::Json<DisclosureChange>,
) -> Result<HttpResponse, Problem> {
    use crate::disclosure::{self, ChangeError};
    let target = record_id.into_inner();
    let actor = caller.claims().sub.clone();
    match disclosure::change(&state, caller.tenant(), target, body.non_disclosure, &actor).await {
        Ok(changed) => Ok(HttpResponse::Created().json(DisclosureChanged {
            change_record_id: changed.change_record_id,
            seq: changed.seq,
            target_record_id: target,
            non_disclosure: changed.non_disclosure,
            reason: disclosure::REASON.into(),
        })),
        Err(ChangeError::NotFound) => Err(Problem::not_found("情報提供等記録")),
        Err(ChangeError::NotAnExchange) => Err(Problem::new(
            422,
            "not-an-exchange-record",
            "Not an exchange record",
            "不開示設定変更の記録は変更の対象にできません。",
            "変更したい照会・提供の記録の record_id を指定してください。",
        )),
        Err(ChangeError::Unchanged) => Err(Problem::new(
            409,
            "disclosure-unchanged",
            "Disclosure already set",
            "この記録は既に指定された開示・不開示の設定です。",
            "GET /v1/records で現在の設定（non_disclosure_now）を確認してください。",
        )),
        Err(ChangeError::Untrusted) => Err(Problem::new(
            409,
            "record-does-not-verify",
            "Record does not verify",
            "この記録は封印された内容と一致しないため、変更できません（データベースが直接変更された可能性があります）。",
            "運用窓口に連絡し、chukan audit verify で記録を検証してください（個人情報は送らないでください）。",
        )),
        Err(ChangeError::Internal(e)) => Err(Problem::internal_because("disclosure change", e)),
    }
}
