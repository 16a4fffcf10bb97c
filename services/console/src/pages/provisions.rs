//! 情報提供: requests from other organisations for this organisation's information. Most are
//! answered automatically; the ones that could not be (自動応答不可) wait here for staff to
//! provide or refuse them before their validity ends.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};

use super::shared::{form_problem, with_query};
use crate::{
    Console,
    form::Posted,
    pages::Failure,
    session::Staff,
    view::{self, Errors, Layout, Screen},
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/provisions", web::get().to(list))
        .route("/provisions/{permit_id}", web::get().to(show))
        .route("/provisions/{permit_id}/answer", web::post().to(answer));
}

/// How many provisions one page shows.
const PAGE: usize = 50;

const STATES: [&str; 4] = ["waiting", "answered", "refused", "expired"];

/// A provision's state in words (the colour only repeats it).
fn state_word(state: &str) -> &'static str {
    match state {
        "waiting" => "応答待ち",
        "answered" => "応答済み",
        "refused" => "提供せず",
        "expired" => "期限切れ",
        _ => "不明な状態",
    }
}

fn status_word(status: &str) -> &'static str {
    match status {
        "provided" => "提供した",
        "refused" => "提供しなかった",
        "expired" => "期限切れ",
        _ => "—",
    }
}

/// A permit id is the NWS's identifier: letters, digits and a few marks. Anything else is no
/// provision, so nothing odd is put into the API's path.
fn is_permit_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn time_or_dash(t: &Option<String>) -> String {
    t.as_deref()
        .map(view::jst_text)
        .unwrap_or_else(|| "—".into())
}

#[derive(Deserialize, Default)]
struct Condition {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    year_kind: String,
}

impl Condition {
    fn text(&self) -> String {
        let year = match self.year_kind.as_str() {
            "1" => "（年度）",
            "2" => "（暦年）",
            _ => "",
        };
        match self.kind.as_str() {
            "1" => format!("{} 時点{year}", self.from),
            "2" => format!("{} 〜 {}{year}", self.from, self.to),
            _ => "—".into(),
        }
    }
}

#[derive(Deserialize)]
struct Provision {
    permit_id: String,
    state: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    reason_code: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    info_code: String,
    inquirer_org: String,
    affair_code: String,
    procedure_code: String,
    serial_no: String,
    branch_no: i32,
    #[serde(default)]
    condition: Condition,
    #[serde(default)]
    addressee: Option<String>,
    #[serde(default)]
    requested_at: Option<String>,
    received_at: String,
    #[serde(default)]
    answered_at: Option<String>,
    expires_at: String,
    manual: bool,
    non_disclosure: bool,
    inquirer_non_disclosure: bool,
    #[serde(default)]
    answered_by: Option<String>,
    records: i32,
}

impl Provision {
    fn state_word(&self) -> &'static str {
        state_word(&self.state)
    }
    fn status_word(&self) -> &'static str {
        self.status.as_deref().map(status_word).unwrap_or("—")
    }
    fn waiting(&self) -> bool {
        self.state == "waiting"
    }
    fn received(&self) -> String {
        view::jst_text(&self.received_at)
    }
    fn requested(&self) -> String {
        time_or_dash(&self.requested_at)
    }
    fn answered(&self) -> String {
        time_or_dash(&self.answered_at)
    }
    fn expires(&self) -> String {
        view::jst_text(&self.expires_at)
    }
}

// ---- the list ---------------------------------------------------------------------------------

/// `state`: one of [`STATES`], or `all`; absent: the waiting queue.
#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    before: String,
}

struct StateOption {
    value: &'static str,
    label: &'static str,
}

#[derive(Template)]
#[template(path = "provisions.html")]
struct ListPage {
    layout: Layout,
    /// The chosen filter: a state, or `all`.
    state: String,
    states: Vec<StateOption>,
    items: Vec<Provision>,
    next_href: Option<String>,
}

impl ListPage {
    fn queue(&self) -> bool {
        self.state == "waiting"
    }
}

fn chosen_state(q: &ListQuery) -> String {
    match q.state.as_deref() {
        None | Some("") => "waiting".into(),
        Some(s) if STATES.contains(&s) => s.into(),
        Some(_) => "all".into(),
    }
}

async fn list(
    console: web::Data<Console>,
    staff: Staff,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Provisions)?;
    let state = chosen_state(&query);
    let limit = PAGE.to_string();
    let mut api_query = vec![("limit", limit.as_str())];
    if state != "all" {
        api_query.push(("state", state.as_str()));
    }
    if is_permit_id(&query.before) {
        api_query.push(("before", query.before.as_str()));
    }
    let items: Vec<Provision> = console
        .api
        .get(&staff, &with_query("/v1/provisions", &api_query))
        .await?;
    // A full page may have a next one; it starts after the last permit id shown.
    let next_href = (items.len() == PAGE)
        .then(|| items.last())
        .flatten()
        .map(|last| {
            with_query(
                "/provisions",
                &[
                    ("state", state.as_str()),
                    ("before", last.permit_id.as_str()),
                ],
            )
        });
    let page = ListPage {
        layout: Layout::new(&staff, Screen::Provisions, "情報提供"),
        states: STATES
            .iter()
            .map(|s| StateOption {
                value: s,
                label: state_word(s),
            })
            .collect(),
        state,
        items,
        next_href,
    };
    view::page(&staff, &page)
}

// ---- one provision and its manual answer ------------------------------------------------------

#[derive(Deserialize, Serialize, Default, Clone)]
struct AnswerForm {
    /// `provide` or `refuse`.
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reason: String,
}

#[derive(Serialize)]
struct AnswerBody {
    decision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Template)]
#[template(path = "provision.html")]
struct DetailPage {
    layout: Layout,
    prov: Provision,
    form: AnswerForm,
    errors: Errors,
}

async fn fetch(console: &Console, staff: &Staff, permit_id: &str) -> Result<Provision, Failure> {
    if !is_permit_id(permit_id) {
        return Err(Failure::NotFound);
    }
    Ok(console
        .api
        .get(staff, &format!("/v1/provisions/{permit_id}"))
        .await?)
}

fn detail(staff: &Staff, prov: Provision, form: AnswerForm, errors: Errors) -> DetailPage {
    DetailPage {
        layout: Layout::new(staff, Screen::Provisions, "情報提供の状態"),
        prov,
        form,
        errors,
    }
}

async fn show(
    console: web::Data<Console>,
    staff: Staff,
    permit_id: web::Path<String>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Provisions)?;
    let p = fetch(&console, &staff, &permit_id).await?;
    let form = AnswerForm {
        decision: "provide".into(),
        reason: String::new(),
    };
    view::page(&staff, &detail(&staff, p, form, Errors::default()))
}

const ANSWER_FIELDS: &[&str] = &["decision", "reason"];

fn answer_body(form: &AnswerForm) -> AnswerBody {
    let refuse = form.decision == "refuse";
    AnswerBody {
        decision: form.decision.trim().to_string(),
        // The reason goes only with a refusal: providing sends none.
        reason: refuse.then(|| form.reason.trim().to_string()),
    }
}

async fn answer(
    console: web::Data<Console>,
    permit_id: web::Path<String>,
    posted: Posted<AnswerForm>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Provisions)?;
    if !is_permit_id(&permit_id) {
        return Err(Failure::NotFound);
    }
    let path = format!("/v1/provisions/{permit_id}/answer");
    match console
        .api
        .post::<serde_json::Value>(&staff, &path, &answer_body(&form))
        .await
    {
        Ok(_) => Ok(view::see_other(&staff, &format!("/provisions/{permit_id}"))),
        Err(e) => {
            let mut problem = form_problem(e)?;
            // The API's reason-required concerns the reason, though it names no field.
            if problem.code == "reason-required" {
                problem.field = Some("reason".into());
            }
            let errors = Errors::from_problem(problem, ANSWER_FIELDS);
            let p = fetch(&console, &staff, &permit_id).await?;
            view::page(&staff, &detail(&staff, p, form, errors))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn only_plain_permit_ids_reach_the_api_path() {
        assert!(is_permit_id("01a24997-ac34-7451-8dea-7828d6b82920"));
        assert!(!is_permit_id("../tenants/self"));
        assert!(!is_permit_id("a?b"));
        assert!(!is_permit_id(""));
    }

    #[test]
    fn a_reason_is_sent_only_with_a_refusal() {
        let provide = answer_body(&AnswerForm {
            decision: "provide".into(),
            reason: "typed, then changed mind".into(),
        });
        assert_eq!(
            serde_json::to_value(provide).unwrap(),
            serde_json::json!({"decision": "provide"})
        );
        let refuse = answer_body(&AnswerForm {
            decision: "refuse".into(),
            reason: " 該当者なし ".into(),
        });
        assert_eq!(
            serde_json::to_value(refuse).unwrap(),
            serde_json::json!({"decision": "refuse", "reason": "該当者なし"})
        );
    }

    #[test]
    fn the_list_opens_on_the_waiting_queue() {
        let q = |s: Option<&str>| ListQuery {
            state: s.map(str::to_string),
            before: String::new(),
        };
        assert_eq!(chosen_state(&q(None)), "waiting");
        assert_eq!(chosen_state(&q(Some("expired"))), "expired");
        assert_eq!(chosen_state(&q(Some("all"))), "all");
        assert_eq!(chosen_state(&q(Some("bogus"))), "all");
    }
}
