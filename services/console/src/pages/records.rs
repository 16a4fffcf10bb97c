//! 情報提供等記録: search the organisation's records (by addressee only in a POST body, never
//! a URL), see one record and change its disclosure, and verify its inclusion proof here, in
//! the console, with the RFC 9162 verifier of `chukan-merkle` and the tree head's Ed25519
//! signature: the staff member sees each step rather than the API's word that all is well.

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{Days, NaiveDate};
use chukan_merkle::{Hash, node_hash, verify_inclusion};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::shared::form_problem;
use crate::{
    Console,
    api::{ApiError, Problem},
    form::Posted,
    pages::{Failure, shared::beside},
    session::Staff,
    view::{self, Errors, Layout, Screen},
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/records", web::get().to(show))
        .route("/records/search", web::post().to(search))
        .route("/records/{record_id}", web::get().to(record))
        .route(
            "/records/{record_id}/disclosure",
            web::post().to(change_disclosure),
        )
        .route("/records/{record_id}/proof", web::get().to(proof));
}

// ---------------------------------------------------------------------------------------
// What the API answers
// ---------------------------------------------------------------------------------------

#[derive(Deserialize, Clone)]
struct Item {
    seq: i64,
    record_id: String,
    event: String,
    inquirer_org: String,
    provider_org: String,
    affair_code: String,
    procedure_code: String,
    info_code: String,
    serial_no: String,
    branch_no: i32,
    permit_id: String,
    requested_at: Option<String>,
    provided_at: Option<String>,
    non_disclosure: bool,
    non_disclosure_now: bool,
    outcome: String,
    at: String,
    leaf_hash: String,
    target_record_id: Option<String>,
    reason: String,
    actor: String,
    integrity: String,
}

impl Item {
    fn event_label(&self) -> &'static str {
        event_label(&self.event)
    }

    fn at_jst(&self) -> String {
        view::jst_text(&self.at)
    }

    fn requested_jst(&self) -> String {
        self.requested_at
            .as_deref()
            .map(view::jst_text)
            .unwrap_or_default()
    }

    fn provided_jst(&self) -> String {
        self.provided_at
            .as_deref()
            .map(view::jst_text)
            .unwrap_or_default()
    }

    fn verified(&self) -> bool {
        self.integrity == "verified"
    }

    /// Only exchange records can have their disclosure changed, not the change records.
    fn changeable(&self) -> bool {
        self.event != "disclosure.changed"
    }
}

#[derive(Deserialize)]
struct RecordPage {
    items: Vec<Item>,
    next_after: Option<i64>,
}

#[derive(Deserialize, Clone)]
struct TreeHead {
    tree_size: u64,
    root_hash: String,
    signed_at: String,
    signed_at_ms: i64,
    kid: String,
    signature: String,
}

#[derive(Deserialize)]
struct InclusionProof {
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: String,
    path: Vec<String>,
    tree_head: Option<TreeHead>,
}

/// `201` of a disclosure change; what it says is shown by the record page reloaded.
#[derive(Deserialize)]
struct DisclosureChanged {}

/// The event of a record in words (the code is shown beside it).
pub(super) fn event_label(event: &str) -> &'static str {
    match event {
        "inquiry.sent" => "情報照会",
        "result.received" => "照会結果の受領",
        "permit.refused" => "情報提供許可証の拒否",
        "provision.made" => "情報提供",
        "provision.manual" => "情報提供（手動）",
        "provision.refused" => "情報提供の拒否",
        "code.acquired" => "符号取得",
        "code.failed" => "符号取得の失敗",
        "notice.sent" => "お知らせ送信",
        "notice.status-received" => "お知らせ状況の受領",
        "selfinfo.answered" => "自己情報提供",
        "selfinfo.refused" => "自己情報提供の拒否",
        "disclosure.changed" => "不開示設定変更",
        _ => "その他",
    }
}

/// "Already so" concerns the choice made, so it is shown beside it.
fn beside_choice(mut problem: Problem) -> Problem {
    if problem.code == "disclosure-unchanged" {
        problem.field = Some("non_disclosure".into());
    }
    problem
}

/// A refusal the console itself makes before asking the API, shown like the API's.
fn local_problem(field: &str, detail: &str, action: &str) -> Problem {
    Problem {
        status: 400,
        code: "invalid-field".into(),
        detail: detail.into(),
        action: action.into(),
        field: Some(field.into()),
        support_id: None,
    }
}

// ---------------------------------------------------------------------------------------
// Search
// ---------------------------------------------------------------------------------------

/// The search form; also the hidden fields of the next-page form, so the criteria (the
/// addressee number among them) travel only in POST bodies.
#[derive(Deserialize, Serialize, Default, Clone)]
struct SearchForm {
    #[serde(default)]
    addressee: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    counterpart: String,
    #[serde(default)]
    procedure_code: String,
    #[serde(default)]
    info_code: String,
    #[serde(default)]
    limit: String,
    #[serde(default)]
    after: String,
}

const SEARCH_FIELDS: &[&str] = &[
    "addressee",
    "from",
    "to",
    "counterpart",
    "procedure_code",
    "info_code",
    "limit",
];

impl SearchForm {
    fn trimmed(self) -> SearchForm {
        let t = |s: String| s.trim().to_string();
        SearchForm {
            addressee: t(self.addressee),
            from: t(self.from),
            to: t(self.to),
            counterpart: t(self.counterpart),
            procedure_code: t(self.procedure_code),
            info_code: t(self.info_code),
            limit: t(self.limit),
            after: t(self.after),
        }
    }

    /// The body of `POST /v1/records/search`: Japan dates become the instants the API
    /// filters on (`to` is exclusive there, so the day after the last day asked for).
    fn body(&self) -> Result<Value, Box<Problem>> {
        let mut body = Map::new();
        let mut text = |key: &str, value: &str| {
            if !value.is_empty() {
                body.insert(key.into(), Value::String(value.into()));
            }
        };
        text("addressee", &self.addressee);
        text("counterpart", &self.counterpart);
        text("procedure_code", &self.procedure_code);
        text("info_code", &self.info_code);
        if let Some(day) = japan_date(&self.from, "from")? {
            body.insert("from".into(), Value::String(japan_midnight(day)));
        }
        if let Some(day) = japan_date(&self.to, "to")? {
            let next = day.checked_add_days(Days::new(1)).unwrap_or(day);
            body.insert("to".into(), Value::String(japan_midnight(next)));
        }
        if let Some(limit) = number(&self.limit, "limit")? {
            body.insert("limit".into(), Value::from(limit));
        }
        if let Some(after) = number(&self.after, "after")? {
            body.insert("after".into(), Value::from(after));
        }
        Ok(Value::Object(body))
    }
}

fn japan_date(text: &str, field: &str) -> Result<Option<NaiveDate>, Box<Problem>> {
    if text.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| {
            Box::new(local_problem(
                field,
                "日付を読み取れません。",
                "年-月-日（例 2026-12-06）で入力してください。",
            ))
        })
}

fn japan_midnight(day: NaiveDate) -> String {
    format!("{}T00:00:00+09:00", day.format("%Y-%m-%d"))
}

fn number(text: &str, field: &str) -> Result<Option<i64>, Box<Problem>> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        Box::new(local_problem(
            field,
            "数値を読み取れません。",
            "半角数字で入力してください。",
        ))
    })
}

#[derive(Template)]
#[template(path = "records.html")]
struct SearchPage {
    layout: Layout,
    form: SearchForm,
    errors: Errors,
    /// None before a search.
    items: Option<Vec<Item>>,
    next_after: Option<i64>,
}

impl SearchPage {
    fn new(staff: &Staff, form: SearchForm) -> SearchPage {
        SearchPage {
            layout: Layout::new(staff, Screen::Records, "情報提供等記録"),
            form,
            errors: Errors::default(),
            items: None,
            next_after: None,
        }
    }
}

async fn show(staff: Staff) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Records)?;
    view::page(&staff, &SearchPage::new(&staff, SearchForm::default()))
}

async fn search(
    console: web::Data<Console>,
    posted: Posted<SearchForm>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Records)?;
    let form = form.trimmed();
    let mut page = SearchPage::new(&staff, form.clone());
    let body = match form.body() {
        Ok(body) => body,
        Err(problem) => {
            page.errors = Errors::from_problem(*problem, SEARCH_FIELDS);
            return view::page(&staff, &page);
        }
    };
    match console
        .api
        .post::<RecordPage>(&staff, "/v1/records/search", &body)
        .await
    {
        Ok(found) => {
            page.items = Some(found.items);
            page.next_after = found.next_after;
        }
        Err(e) => page.errors = beside(form_problem(e)?, SEARCH_FIELDS, &[]),
    }
    view::page(&staff, &page)
}

// ---------------------------------------------------------------------------------------
// One record
// ---------------------------------------------------------------------------------------

/// `?seq=` (the record's leaf index, from the search) and `?changed=1` after a change.
#[derive(Deserialize)]
struct RecordQuery {
    seq: Option<String>,
    changed: Option<String>,
}

/// The record at leaf `seq`, if it is `record_id`: the API has no lookup by id, but the
/// search's cursor reaches exactly one leaf (records below `after`, newest first).
async fn record_at(
    console: &Console,
    staff: &Staff,
    record_id: &uuid::Uuid,
    seq: i64,
) -> Result<Item, Failure> {
    let body = serde_json::json!({ "after": seq.saturating_add(1), "limit": 1 });
    let page: RecordPage = console.api.post(staff, "/v1/records/search", &body).await?;
    page.items
        .into_iter()
        .find(|i| i.seq == seq && i.record_id == record_id.to_string())
        .ok_or(Failure::NotFound)
}

/// Where the record is in the log: as the search said, else as its inclusion proof says.
async fn seq_of(
    console: &Console,
    staff: &Staff,
    record_id: &uuid::Uuid,
    given: Option<&str>,
) -> Result<i64, Failure> {
    if let Some(seq) = given.and_then(|s| s.trim().parse::<i64>().ok()) {
        return Ok(seq);
    }
    let proof: InclusionProof = console
        .api
        .get(staff, &format!("/v1/records/{record_id}/proof"))
        .await?;
    i64::try_from(proof.leaf_index).map_err(|_| Failure::NotFound)
}

#[derive(Template)]
#[template(path = "records_item.html")]
struct ItemPage {
    layout: Layout,
    r: Item,
    changed: bool,
    errors: Errors,
}

async fn record(
    console: web::Data<Console>,
    staff: Staff,
    record_id: web::Path<uuid::Uuid>,
    query: web::Query<RecordQuery>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Records)?;
    let record_id = record_id.into_inner();
    let seq = seq_of(&console, &staff, &record_id, query.seq.as_deref()).await?;
    let r = record_at(&console, &staff, &record_id, seq).await?;
    let page = ItemPage {
        layout: Layout::new(&staff, Screen::Records, "情報提供等記録の詳細"),
        r,
        changed: query.changed.is_some(),
        errors: Errors::default(),
    };
    view::page(&staff, &page)
}

#[derive(Deserialize)]
struct DisclosureForm {
    #[serde(default)]
    non_disclosure: String,
    #[serde(default)]
    seq: String,
}

async fn change_disclosure(
    console: web::Data<Console>,
    posted: Posted<DisclosureForm>,
    record_id: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Records)?;
    let record_id = record_id.into_inner();
    let seq = seq_of(&console, &staff, &record_id, Some(&form.seq)).await?;
    let sent = match form.non_disclosure.as_str() {
        choice @ ("true" | "false") => {
            let body = serde_json::json!({ "non_disclosure": choice == "true" });
            console
                .api
                .post::<DisclosureChanged>(
                    &staff,
                    &format!("/v1/records/{record_id}/disclosure"),
                    &body,
                )
                .await
        }
        _ => Err(ApiError::Problem(Box::new(local_problem(
            "non_disclosure",
            "開示するか不開示にするかが選ばれていません。",
            "どちらかを選んでから変更してください。",
        )))),
    };
    let problem = match sent {
        Ok(_) => {
            return Ok(view::see_other(
                &staff,
                &format!("/records/{record_id}?seq={seq}&changed=1"),
            ));
        }
        Err(e) => beside_choice(form_problem(e)?),
    };
    let page = ItemPage {
        layout: Layout::new(&staff, Screen::Records, "情報提供等記録の詳細"),
        r: record_at(&console, &staff, &record_id, seq).await?,
        changed: false,
        errors: Errors::from_problem(problem, &["non_disclosure"]),
    };
    view::page(&staff, &page)
}

// ---------------------------------------------------------------------------------------
// Inclusion proof, verified here
// ---------------------------------------------------------------------------------------

/// One level of the audit path: the sibling combined with the running hash.
struct Step {
    number: usize,
    sibling: String,
    /// Whether the sibling is the left child (H(sibling ‖ running)) or the right one.
    sibling_left: bool,
    before: String,
    after: String,
}

/// Walks the audit path as RFC 9162 §2.1.3.2 does, keeping every step for the page.
/// `root` is None when the path does not fit the tree (too long or too short).
struct Walk {
    steps: Vec<Step>,
    root: Option<Hash>,
}

fn walk(index: u64, size: u64, leaf: &Hash, path: &[Hash]) -> Walk {
    let mut steps = Vec::with_capacity(path.len());
    if index >= size {
        return Walk { steps, root: None };
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for (i, p) in path.iter().enumerate() {
        if snode == 0 {
            return Walk { steps, root: None };
        }
        let before = r;
        let sibling_left = fnode & 1 == 1 || fnode == snode;
        if sibling_left {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
        steps.push(Step {
            number: i + 1,
            sibling: hex::encode(p),
            sibling_left,
            before: hex::encode(before),
            after: hex::encode(r),
        });
    }
    Walk {
        steps,
        root: (snode == 0).then_some(r),
    }
}

fn unhex(text: &str) -> Option<Hash> {
    hex::decode(text.trim()).ok()?.try_into().ok()
}

/// The tree head's signature, checked against the configured public key.
struct SignatureCheck {
    ok: bool,
    /// Why not, in words.
    why: String,
}

/// The text a tree head signs: `chukan-audit-sth/v1|{tenant}|{size}|{root hex}|{ms}`.
fn tree_head_message(tenant: &str, head: &TreeHead) -> String {
    format!(
        "chukan-audit-sth/v1|{tenant}|{}|{}|{}",
        head.tree_size,
        head.root_hash.to_ascii_lowercase(),
        head.signed_at_ms
    )
}

fn check_signature(
    keys: &chukan_crypto::Verifiers,
    tenant: &str,
    head: &TreeHead,
) -> SignatureCheck {
    use base64::Engine as _;
    let fail = |why: &str| SignatureCheck {
        ok: false,
        why: why.into(),
    };
    if !keys.contains(&head.kid) {
        return fail("署名の鍵IDがこの端末の信頼する公開鍵にありません。");
    }
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(head.signature.trim())
    else {
        return fail("署名を読み取れません（base64 ではありません）。");
    };
    let message = tree_head_message(tenant, head);
    match keys.verify(&head.kid, message.as_bytes(), &signature) {
        Ok(()) => SignatureCheck {
            ok: true,
            why: String::new(),
        },
        Err(_) => fail("署名が一致しません（ツリーヘッドが改ざんされたか、別の団体のものです）。"),
    }
}

/// Everything the proof page shows, and the verdict.
struct Verification {
    record_id: String,
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: String,
    /// The leaf hash the record's search result carries, if the record was found.
    record_leaf_hash: Option<String>,
    steps: Vec<Step>,
    computed_root: String,
    head: Option<TreeHead>,
    head_signed_at: String,
    /// The newest signed tree head, when it is larger than the one proved against.
    latest_size: Option<u64>,
    leaf_ok: bool,
    roots_match: bool,
    /// `chukan_merkle::verify_inclusion`'s own answer (the walk above only shows it).
    inclusion_ok: bool,
    signature: SignatureCheck,
    /// What failed, in words; empty when verified.
    failures: Vec<&'static str>,
}

impl Verification {
    fn verified(&self) -> bool {
        self.failures.is_empty()
    }
}

fn verify(
    keys: &chukan_crypto::Verifiers,
    tenant: &str,
    record_id: String,
    proof: InclusionProof,
    record_leaf_hash: Option<String>,
    latest: Option<TreeHead>,
) -> Verification {
    let head = proof
        .tree_head
        .clone()
        .or_else(|| latest.clone().filter(|h| h.tree_size == proof.tree_size));
    let leaf = unhex(&proof.leaf_hash);
    let path: Option<Vec<Hash>> = proof.path.iter().map(|h| unhex(h)).collect();
    let head_root = head.as_ref().and_then(|h| unhex(&h.root_hash));
    let walked = match (&leaf, &path) {
        (Some(leaf), Some(path)) => walk(proof.leaf_index, proof.tree_size, leaf, path),
        _ => Walk {
            steps: Vec::new(),
            root: None,
        },
    };
    let inclusion_ok = match (&leaf, &path, &head_root) {
        (Some(leaf), Some(path), Some(root)) => {
            verify_inclusion(proof.leaf_index, proof.tree_size, leaf, path, root)
        }
        _ => false,
    };
    let roots_match = walked.root.is_some() && walked.root == head_root;
    let leaf_ok = record_leaf_hash
        .as_deref()
        .is_some_and(|h| h.eq_ignore_ascii_case(proof.leaf_hash.trim()));
    let signature = match &head {
        Some(h) => check_signature(keys, tenant, h),
        None => SignatureCheck {
            ok: false,
            why: "このツリーサイズの署名済みツリーヘッドがありません。".into(),
        },
    };
    let size_ok = head
        .as_ref()
        .is_some_and(|h| h.tree_size == proof.tree_size);
    let mut failures = Vec::new();
    if leaf.is_none() || path.is_none() {
        failures.push("証明のハッシュを読み取れません。");
    }
    if !leaf_ok {
        failures.push("記録の葉ハッシュと証明の葉ハッシュが一致しません。");
    }
    if !roots_match || !size_ok {
        failures.push("計算したルートハッシュが署名済みツリーヘッドのルートと一致しません。");
    }
    if !inclusion_ok {
        failures.push("RFC 9162 の包含証明の検証に失敗しました。");
    }
    if !signature.ok {
        failures.push("署名済みツリーヘッドの署名を確認できません。");
    }
    Verification {
        record_id,
        leaf_index: proof.leaf_index,
        tree_size: proof.tree_size,
        leaf_hash: proof.leaf_hash,
        record_leaf_hash,
        steps: walked.steps,
        computed_root: walked.root.map(hex::encode).unwrap_or_default(),
        head_signed_at: head
            .as_ref()
            .map(|h| view::jst_text(&h.signed_at))
            .unwrap_or_default(),
        latest_size: latest.map(|h| h.tree_size).filter(|s| *s > proof.tree_size),
        head,
        leaf_ok,
        roots_match,
        inclusion_ok,
        signature,
        failures,
    }
}

#[derive(Template)]
#[template(path = "records_proof.html")]
struct ProofPage {
    layout: Layout,
    v: Verification,
}

/// The proof page while the record waits for the next signed tree head.
#[derive(Template)]
#[template(path = "records_proof_pending.html")]
struct ProofPending {
    layout: Layout,
    record_id: String,
    p: Problem,
}

async fn proof(
    console: web::Data<Console>,
    staff: Staff,
    record_id: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Records)?;
    let record_id = record_id.into_inner();
    let proof_path = format!("/v1/records/{record_id}/proof");
    let (proof, latest) = futures_util::join!(
        console.api.get::<InclusionProof>(&staff, &proof_path),
        console.api.get::<TreeHead>(&staff, "/v1/records/tree-head"),
    );
    let proof = match proof {
        Ok(p) => p,
        // Not under a signed tree head yet: say so, and look again until it is.
        Err(ApiError::Problem(p)) if p.status == 409 => {
            let page = ProofPending {
                layout: Layout::new(&staff, Screen::Records, "包含証明の検証"),
                record_id: record_id.to_string(),
                p: *p,
            };
            return view::page(&staff, &page);
        }
        Err(e) => return Err(e.into()),
    };
    let seq = i64::try_from(proof.leaf_index).map_err(|_| Failure::NotFound)?;
    // The record's own leaf hash, from the search, is what the proof must be about.
    let record_leaf_hash = match record_at(&console, &staff, &record_id, seq).await {
        Ok(r) => Some(r.leaf_hash),
        Err(Failure::NotFound) => None,
        Err(e) => return Err(e),
    };
    let v = verify(
        &console.tree_head_keys,
        staff.tenant(),
        record_id.to_string(),
        proof,
        record_leaf_hash,
        latest.ok(),
    );
    let page = ProofPage {
        layout: Layout::new(&staff, Screen::Records, "包含証明の検証"),
        v,
    };
    view::page(&staff, &page)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chukan_merkle::{Frontier, Proof, leaf_hash};

    /// A log of `n` leaves: its leaf hashes, stored nodes and root.
    fn log(
        n: u64,
    ) -> (
        Vec<Hash>,
        std::collections::HashMap<chukan_merkle::NodeId, Hash>,
    ) {
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut f = Frontier::new();
        let nodes = leaves.iter().flat_map(|l| f.append(*l)).collect();
        (leaves, nodes)
    }

    #[test]
    fn the_walk_shown_agrees_with_the_independent_verifier() {
        let (leaves, nodes) = log(13);
        for size in 1..=13u64 {
            let first = Proof::inclusion(0, size)
                .unwrap()
                .assemble(|id| nodes.get(&id).copied())
                .unwrap();
            let root = walk(0, size, &leaves[0], &first).root.unwrap();
            for index in 0..size {
                let path = Proof::inclusion(index, size)
                    .unwrap()
                    .assemble(|id| nodes.get(&id).copied())
                    .unwrap();
                let w = walk(index, size, &leaves[index as usize], &path);
                assert_eq!(w.steps.len(), path.len());
                assert_eq!(w.root, Some(root), "{index}/{size}");
                assert!(verify_inclusion(
                    index,
                    size,
                    &leaves[index as usize],
                    &path,
                    &root
                ));
                if !path.is_empty() {
                    // One more hash than the tree has levels for: no root at all.
                    let mut long = path.clone();
                    long.push(root);
                    assert_eq!(walk(index, size, &leaves[index as usize], &long).root, None);
                }
            }
        }
    }

    fn signed_head(
        signer: &chukan_crypto::Signer,
        tenant: &str,
        size: u64,
        root: &Hash,
    ) -> TreeHead {
        use base64::Engine as _;
        let mut head = TreeHead {
            tree_size: size,
            root_hash: hex::encode(root),
            signed_at: "2026-12-06T04:23:32.278Z".into(),
            signed_at_ms: 1_796_531_012_278,
            kid: signer.kid().into(),
            signature: String::new(),
        };
        let sig = signer.sign(tree_head_message(tenant, &head).as_bytes());
        head.signature = base64::engine::general_purpose::STANDARD.encode(sig);
        head
    }

    #[test]
    fn a_true_proof_verifies_and_any_tampering_is_a_failure_in_words() {
        let signer = chukan_crypto::Signer::from_seed_base64(
            "audit-test",
            &chukan_crypto::generate_key_base64(),
        )
        .unwrap();
        let mut keys = chukan_crypto::Verifiers::default();
        keys.add_bytes(signer.kid(), &signer.verifying_key_bytes())
            .unwrap();
        let (leaves, nodes) = log(7);
        let path = Proof::inclusion(5, 7)
            .unwrap()
            .assemble(|id| nodes.get(&id).copied())
            .unwrap();
        let root = walk(5, 7, &leaves[5], &path).root.unwrap();
        let proof = |head: Option<TreeHead>| InclusionProof {
            leaf_index: 5,
            tree_size: 7,
            leaf_hash: hex::encode(leaves[5]),
            path: path.iter().map(hex::encode).collect(),
            tree_head: head,
        };
        let record_leaf = Some(hex::encode(leaves[5]));
        let head = signed_head(&signer, "1310010000000001", 7, &root);

        let v = verify(
            &keys,
            "1310010000000001",
            "r".into(),
            proof(Some(head.clone())),
            record_leaf.clone(),
            None,
        );
        assert!(v.verified(), "{:?}", v.failures);
        assert_eq!(v.steps.len(), path.len());

        // Presented as another organisation's head: the signature fails.
        let v = verify(
            &keys,
            "2710000000000002",
            "r".into(),
            proof(Some(head.clone())),
            record_leaf.clone(),
            None,
        );
        assert!(!v.verified() && !v.signature.ok);

        // A different record's leaf.
        let v = verify(
            &keys,
            "1310010000000001",
            "r".into(),
            proof(Some(head.clone())),
            Some(hex::encode(leaves[4])),
            None,
        );
        assert!(!v.verified() && !v.leaf_ok);

        // A tampered audit path.
        let mut bad = proof(Some(head.clone()));
        bad.path[0] = hex::encode([0u8; 32]);
        let v = verify(
            &keys,
            "1310010000000001",
            "r".into(),
            bad,
            record_leaf.clone(),
            None,
        );
        assert!(!v.verified() && !v.roots_match && !v.inclusion_ok);

        // A head signed by a key this console does not trust.
        let stranger = chukan_crypto::Signer::from_seed_base64(
            "audit-test",
            &chukan_crypto::generate_key_base64(),
        )
        .unwrap();
        let forged = signed_head(&stranger, "1310010000000001", 7, &root);
        let v = verify(
            &keys,
            "1310010000000001",
            "r".into(),
            proof(Some(forged)),
            record_leaf.clone(),
            None,
        );
        assert!(!v.verified() && !v.signature.ok);

        // No head in the proof: the latest one of the same size is used.
        let v = verify(
            &keys,
            "1310010000000001",
            "r".into(),
            proof(None),
            record_leaf,
            Some(head),
        );
        assert!(v.verified(), "{:?}", v.failures);
    }
}
