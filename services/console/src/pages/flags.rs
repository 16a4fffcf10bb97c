//! フラグ: a resident's three flags — 不開示該当, 自己情報提供不可 and 自動応答不可 (whole items or
//! single datasets) — read together (enhancement #1) and replaced in one step. The
//! resident's number is only ever in the form body.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};

use super::shared::form_problem;
use crate::{
    Console,
    form::Posted,
    pages::Failure,
    session::Staff,
    view::{self, Errors, Layout, Screen},
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/flags", web::get().to(show))
        .route("/flags/query", web::post().to(query))
        .route("/flags", web::post().to(replace));
}

#[derive(Deserialize, Serialize, Clone)]
struct Prohibition {
    info_code: String,
    dataset: Option<String>,
}

#[derive(Deserialize)]
struct FlagsView {
    non_disclosure: bool,
    self_info_prohibited: bool,
    auto_response_prohibited: Vec<Prohibition>,
    revision: i64,
    updated_at: Option<String>,
}

#[derive(Deserialize, Default)]
struct LookUp {
    #[serde(default)]
    integrated_addressee_number: String,
}

#[derive(Deserialize)]
struct Replace {
    #[serde(default)]
    integrated_addressee_number: String,
    #[serde(default)]
    non_disclosure: Option<String>,
    #[serde(default)]
    self_info_prohibited: Option<String>,
    /// One 自動応答不可 per line: an item code, optionally followed by a dataset code.
    #[serde(default)]
    prohibitions: String,
}

#[derive(Serialize)]
struct Update<'a> {
    integrated_addressee_number: &'a str,
    non_disclosure: bool,
    self_info_prohibited: bool,
    auto_response_prohibited: Vec<Prohibition>,
}

#[derive(Template)]
#[template(path = "flags.html")]
struct FlagsPage {
    layout: Layout,
    addressee: String,
    errors: Errors,
    /// The resident's flags, once looked up.
    flags: Option<FlagsView>,
    updated_at: String,
    /// The 自動応答不可 lines as the edit box shows them.
    prohibitions: String,
    saved: bool,
}

impl FlagsPage {
    fn new(staff: &Staff, addressee: String) -> FlagsPage {
        FlagsPage {
            layout: Layout::new(staff, Screen::Flags, "フラグ"),
            addressee,
            errors: Errors::default(),
            flags: None,
            updated_at: String::new(),
            prohibitions: String::new(),
            saved: false,
        }
    }

    fn with(mut self, flags: FlagsView) -> FlagsPage {
        self.updated_at = flags
            .updated_at
            .as_deref()
            .map(view::jst_text)
            .unwrap_or_default();
        self.prohibitions = flags
            .auto_response_prohibited
            .iter()
            .map(|p| match &p.dataset {
                Some(d) => format!("{} {d}", p.info_code),
                None => p.info_code.clone(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        self.flags = Some(flags);
        self
    }
}

const FIELDS: &[&str] = &["integrated_addressee_number", "auto_response_prohibited"];

async fn show(staff: Staff) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Flags)?;
    view::page(&staff, &FlagsPage::new(&staff, String::new()))
}

async fn query(
    console: web::Data<Console>,
    posted: Posted<LookUp>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Flags)?;
    let addressee = form.integrated_addressee_number.trim().to_string();
    let page = FlagsPage::new(&staff, addressee.clone());
    let answer = console
        .api
        .post::<FlagsView>(
            &staff,
            "/v1/flags/query",
            &serde_json::json!({ "integrated_addressee_number": addressee }),
        )
        .await;
    let page = match answer {
        Ok(flags) => page.with(flags),
        Err(e) => FlagsPage {
            errors: Errors::from_problem(form_problem(e)?, FIELDS),
            ..page
        },
    };
    view::page(&staff, &page)
}

/// `TM00000000000031` or `TM00000000000031 0001` per line; blank lines are skipped. The API
/// checks the codes themselves and says which is wrong.
fn parse_prohibitions(text: &str) -> Vec<Prohibition> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            Prohibition {
                info_code: parts.next().unwrap_or_default().to_string(),
                dataset: parts.next().map(str::to_string),
            }
        })
        .collect()
}

async fn replace(
    console: web::Data<Console>,
    posted: Posted<Replace>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Flags)?;
    let addressee = form.integrated_addressee_number.trim().to_string();
    let update = Update {
        integrated_addressee_number: &addressee,
        non_disclosure: form.non_disclosure.is_some(),
        self_info_prohibited: form.self_info_prohibited.is_some(),
        auto_response_prohibited: parse_prohibitions(&form.prohibitions),
    };
    let answer = console
        .api
        .send::<FlagsView>(&staff, reqwest::Method::PUT, "/v1/flags", &update)
        .await;
    let page = FlagsPage::new(&staff, addressee.clone());
    let page = match answer {
        Ok(flags) => FlagsPage {
            saved: true,
            ..page.with(flags)
        },
        Err(e) => {
            let problem = form_problem(e)?;
            // Keep what was entered so it can be corrected.
            let entered = FlagsView {
                non_disclosure: update.non_disclosure,
                self_info_prohibited: update.self_info_prohibited,
                auto_response_prohibited: update.auto_response_prohibited,
                revision: -1,
                updated_at: None,
            };
            FlagsPage {
                errors: Errors::from_problem(problem, FIELDS),
                ..page.with(entered)
            }
        }
    };
    view::page(&staff, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prohibition_lines_are_items_with_an_optional_dataset() {
        let p = parse_prohibitions("TM00000000000031\n\n  TM00000000000032 0001  \n");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].info_code, "TM00000000000031");
        assert_eq!(p[0].dataset, None);
        assert_eq!(p[1].dataset.as_deref(), Some("0001"));
    }
}
