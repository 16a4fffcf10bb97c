//! 管理: staff users (create, end validity, unlock, change roles) and departments (versions
//! of a name and excluded procedures, and their end). System administrators only; the API
//! decides every call, including the rule of two valid administrators.

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::shared::{beside, encode_component, form_problem, optional};
use crate::{
    Console,
    api::Problem,
    form::Posted,
    pages::Failure,
    session::Staff,
    view::{self, Errors, Layout, Screen},
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/users", web::get().to(list_users))
        .route("/users", web::post().to(create_user))
        .route("/users/{id}", web::get().to(show_user))
        .route("/users/{id}/roles", web::post().to(change_roles))
        .route("/users/{id}/valid-to", web::post().to(end_user))
        .route("/users/{id}/unlock", web::post().to(unlock_user))
        .route("/departments", web::get().to(list_departments))
        .route("/departments", web::post().to(create_department))
        .route("/departments/{code}", web::get().to(show_department))
        .route("/departments/{code}", web::post().to(put_department))
        .route(
            "/departments/{code}/valid-to",
            web::post().to(end_department),
        );
}

// ---------------------------------------------------------------------------------------
// Shared
// ---------------------------------------------------------------------------------------

const ROLES: [(&str, &str); 2] = [
    ("system_admin", "システム管理者"),
    ("business_staff", "業務担当者"),
];

fn role_label(role: &str) -> &str {
    ROLES
        .iter()
        .find(|(r, _)| *r == role)
        .map_or(role, |(_, label)| label)
}

/// Today in Japan, for "valid now" in words.
fn japan_today() -> NaiveDate {
    Utc::now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .date_naive()
}

/// A validity period in words relative to today.
fn validity_state(from: &str, to: Option<&str>) -> &'static str {
    let today = japan_today().format("%Y-%m-%d").to_string();
    // ISO dates compare as text.
    if from > today.as_str() {
        "開始前"
    } else if to.is_some_and(|t| t < today.as_str()) {
        "終了"
    } else {
        "有効"
    }
}

// ---------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct User {
    id: String,
    login_id: String,
    display_name: String,
    roles: Vec<String>,
    department: Option<String>,
    valid_from: String,
    valid_to: Option<String>,
    failed_logins: i32,
    locked: bool,
    locked_until: Option<String>,
    created_at: String,
}

impl User {
    fn role_labels(&self) -> String {
        self.roles
            .iter()
            .map(|r| role_label(r))
            .collect::<Vec<_>>()
            .join("、")
    }

    fn state(&self) -> &'static str {
        validity_state(&self.valid_from, self.valid_to.as_deref())
    }

    fn locked_until_jst(&self) -> String {
        self.locked_until
            .as_deref()
            .map(view::jst_text)
            .unwrap_or_default()
    }

    fn created_jst(&self) -> String {
        view::jst_text(&self.created_at)
    }
}

/// The new-user form. No `Debug`: it holds a password, which is never shown again.
#[derive(Deserialize, Default)]
struct NewUserForm {
    #[serde(default)]
    login_id: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    department: String,
    #[serde(default)]
    valid_from: String,
    #[serde(default)]
    valid_to: String,
}

#[derive(Serialize)]
struct NewUser<'a> {
    login_id: &'a str,
    display_name: &'a str,
    password: &'a str,
    roles: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    department: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_to: Option<String>,
}

const NEW_USER_FIELDS: &[&str] = &[
    "login_id",
    "display_name",
    "password",
    "roles",
    "department",
    "valid_from",
    "valid_to",
];

const NEW_USER_CODES: &[(&str, &str)] = &[
    ("weak-password", "password"),
    ("invalid-roles", "roles"),
    ("duplicate-login-id", "login_id"),
    ("retroactive-change", "valid_from"),
    ("invalid-period", "valid_to"),
];

/// Every value of a repeated field (check boxes).
fn all_of(pairs: &[(String, String)], name: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<User>,
    roles: [(&'static str, &'static str); 2],
    /// What the form showed (never the password).
    login_id: String,
    display_name: String,
    department: String,
    valid_from: String,
    valid_to: String,
    chosen: Vec<String>,
    errors: Errors,
}

impl UsersPage {
    fn new(staff: &Staff, users: Vec<User>) -> UsersPage {
        UsersPage {
            layout: Layout::new(staff, Screen::Users, "利用者管理"),
            users,
            roles: ROLES,
            login_id: String::new(),
            display_name: String::new(),
            department: String::new(),
            valid_from: String::new(),
            valid_to: String::new(),
            chosen: vec!["business_staff".into()],
            errors: Errors::default(),
        }
    }

    fn is_chosen(&self, role: &str) -> bool {
        self.chosen.iter().any(|r| r == role)
    }
}

async fn users(console: &Console, staff: &Staff) -> Result<Vec<User>, Failure> {
    Ok(console.api.get(staff, "/v1/users").await?)
}

async fn list_users(console: web::Data<Console>, staff: Staff) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Users)?;
    let page = UsersPage::new(&staff, users(&console, &staff).await?);
    view::page(&staff, &page)
}

async fn create_user(
    console: web::Data<Console>,
    posted: Posted<NewUserForm>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, pairs } = posted;
    view::require(&staff, Screen::Users)?;
    let roles = all_of(&pairs, "roles");
    let body = NewUser {
        login_id: form.login_id.trim(),
        display_name: form.display_name.trim(),
        password: &form.password,
        roles: &roles,
        department: optional(&form.department),
        valid_from: optional(&form.valid_from),
        valid_to: optional(&form.valid_to),
    };
    let problem = match console.api.post::<User>(&staff, "/v1/users", &body).await {
        Ok(user) => return Ok(view::see_other(&staff, &format!("/users/{}", user.id))),
        Err(e) => form_problem(e)?,
    };
    let mut page = UsersPage::new(&staff, users(&console, &staff).await?);
    page.login_id = form.login_id;
    page.display_name = form.display_name;
    page.department = form.department;
    page.valid_from = form.valid_from;
    page.valid_to = form.valid_to;
    page.chosen = roles;
    page.errors = beside(problem, NEW_USER_FIELDS, NEW_USER_CODES);
    view::page(&staff, &page)
}

#[derive(Template)]
#[template(path = "users_item.html")]
struct UserPage {
    layout: Layout,
    u: User,
    roles: [(&'static str, &'static str); 2],
    /// The roles the form shows checked (the user's, or what was sent).
    chosen: Vec<String>,
    roles_errors: Errors,
    valid_to: String,
    valid_to_errors: Errors,
    unlock_errors: Errors,
    /// What was just done, in words.
    done: &'static str,
}

impl UserPage {
    fn new(staff: &Staff, u: User) -> UserPage {
        UserPage {
            layout: Layout::new(staff, Screen::Users, "利用者の詳細"),
            chosen: u.roles.clone(),
            valid_to: u.valid_to.clone().unwrap_or_default(),
            u,
            roles: ROLES,
            roles_errors: Errors::default(),
            valid_to_errors: Errors::default(),
            unlock_errors: Errors::default(),
            done: "",
        }
    }

    fn is_chosen(&self, role: &str) -> bool {
        self.chosen.iter().any(|r| r == role)
    }
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

fn done_text(done: Option<&str>) -> &'static str {
    match done {
        Some("created") => "利用者を登録しました。",
        Some("roles") => "権限を変更しました。次回のログインから有効です。",
        Some("valid-to") => "有効期間の終了日を設定しました。",
        Some("unlocked") => "ロックを解除しました。",
        _ => "",
    }
}

async fn user(console: &Console, staff: &Staff, id: &uuid::Uuid) -> Result<User, Failure> {
    Ok(console.api.get(staff, &format!("/v1/users/{id}")).await?)
}

async fn show_user(
    console: web::Data<Console>,
    staff: Staff,
    id: web::Path<uuid::Uuid>,
    done: web::Query<Done>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Users)?;
    let mut page = UserPage::new(&staff, user(&console, &staff, &id).await?);
    page.done = done_text(done.done.as_deref());
    view::page(&staff, &page)
}

/// The roles form: only the CSRF field besides the repeated `roles` check boxes.
#[derive(Deserialize)]
struct Empty {}

async fn change_roles(
    console: web::Data<Console>,
    posted: Posted<Empty>,
    id: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, pairs, .. } = posted;
    view::require(&staff, Screen::Users)?;
    let id = id.into_inner();
    let roles = all_of(&pairs, "roles");
    let body = serde_json::json!({ "roles": roles });
    let sent = console
        .api
        .send::<User>(
            &staff,
            reqwest::Method::PUT,
            &format!("/v1/users/{id}/roles"),
            &body,
        )
        .await;
    let problem = match sent {
        Ok(_) => return Ok(view::see_other(&staff, &format!("/users/{id}?done=roles"))),
        Err(e) => form_problem(e)?,
    };
    let mut page = UserPage::new(&staff, user(&console, &staff, &id).await?);
    page.chosen = roles;
    page.roles_errors = beside(
        problem,
        &["roles"],
        &[
            ("invalid-roles", "roles"),
            ("too-few-administrators", "roles"),
        ],
    );
    view::page(&staff, &page)
}

#[derive(Deserialize)]
struct ValidToForm {
    #[serde(default)]
    valid_to: String,
}

async fn end_user(
    console: web::Data<Console>,
    posted: Posted<ValidToForm>,
    id: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Users)?;
    let id = id.into_inner();
    let body = serde_json::json!({ "valid_to": form.valid_to.trim() });
    let sent = console
        .api
        .post::<User>(&staff, &format!("/v1/users/{id}/valid-to"), &body)
        .await;
    let problem = match sent {
        Ok(_) => {
            return Ok(view::see_other(
                &staff,
                &format!("/users/{id}?done=valid-to"),
            ));
        }
        Err(e) => form_problem(e)?,
    };
    let mut page = UserPage::new(&staff, user(&console, &staff, &id).await?);
    page.valid_to = form.valid_to;
    // Every refusal of this form concerns its one date.
    let mut problem = problem;
    problem.field = Some("valid_to".into());
    page.valid_to_errors = Errors::from_problem(problem, &["valid_to"]);
    view::page(&staff, &page)
}

async fn unlock_user(
    console: web::Data<Console>,
    posted: Posted<Empty>,
    id: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, .. } = posted;
    view::require(&staff, Screen::Users)?;
    let id = id.into_inner();
    let sent = console
        .api
        .post::<User>(
            &staff,
            &format!("/v1/users/{id}/unlock"),
            &serde_json::json!({}),
        )
        .await;
    let problem = match sent {
        Ok(_) => {
            return Ok(view::see_other(
                &staff,
                &format!("/users/{id}?done=unlocked"),
            ));
        }
        Err(e) => form_problem(e)?,
    };
    let mut page = UserPage::new(&staff, user(&console, &staff, &id).await?);
    page.unlock_errors = Errors::from_problem(problem, &[]);
    view::page(&staff, &page)
}

// ---------------------------------------------------------------------------------------
// Departments
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Department {
    code: String,
    valid_today: bool,
    name: String,
    excluded_procedures: Vec<String>,
    valid_from: String,
    valid_to: Option<String>,
    history: Vec<Period>,
    updated_at: String,
}

impl Department {
    fn href(&self) -> String {
        format!("/departments/{}", encode_component(&self.code))
    }

    fn updated_jst(&self) -> String {
        view::jst_text(&self.updated_at)
    }
}

#[derive(Deserialize)]
struct Period {
    valid_from: String,
    valid_to: Option<String>,
    name: String,
    excluded_procedures: Vec<String>,
    recorded_by: String,
    recorded_at: String,
}

impl Period {
    fn state(&self) -> &'static str {
        validity_state(&self.valid_from, self.valid_to.as_deref())
    }

    fn recorded_jst(&self) -> String {
        view::jst_text(&self.recorded_at)
    }
}

/// A version of a department as entered; `code` only on the new-department form.
#[derive(Deserialize, Default, Clone)]
struct DepartmentForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    name: String,
    /// 対象外事務手続コード, one a line (commas and blanks also separate).
    #[serde(default)]
    excluded_procedures: String,
    #[serde(default)]
    valid_from: String,
    #[serde(default)]
    valid_to: String,
}

#[derive(Serialize)]
struct DepartmentBody {
    name: String,
    excluded_procedures: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_to: Option<String>,
}

impl DepartmentForm {
    fn body(&self) -> DepartmentBody {
        DepartmentBody {
            name: self.name.trim().to_string(),
            excluded_procedures: self
                .excluded_procedures
                .split(|c: char| c == ',' || c == '、' || c.is_whitespace())
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect(),
            valid_from: optional(&self.valid_from),
            valid_to: optional(&self.valid_to),
        }
    }

    fn of(d: &Department) -> DepartmentForm {
        DepartmentForm {
            code: d.code.clone(),
            name: d.name.clone(),
            excluded_procedures: d.excluded_procedures.join("\n"),
            valid_from: String::new(),
            valid_to: String::new(),
        }
    }
}

const DEPARTMENT_FIELDS: &[&str] = &[
    "code",
    "name",
    "excluded_procedures",
    "valid_from",
    "valid_to",
];

const DEPARTMENT_CODES: &[(&str, &str)] = &[
    ("retroactive-change", "valid_from"),
    ("invalid-period", "valid_to"),
];

#[derive(Template)]
#[template(path = "departments.html")]
struct DepartmentsPage {
    layout: Layout,
    departments: Vec<Department>,
    form: DepartmentForm,
    errors: Errors,
}

async fn departments(console: &Console, staff: &Staff) -> Result<Vec<Department>, Failure> {
    Ok(console.api.get(staff, "/v1/departments").await?)
}

async fn list_departments(
    console: web::Data<Console>,
    staff: Staff,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Departments)?;
    let page = DepartmentsPage {
        layout: Layout::new(&staff, Screen::Departments, "部署管理"),
        departments: departments(&console, &staff).await?,
        form: DepartmentForm::default(),
        errors: Errors::default(),
    };
    view::page(&staff, &page)
}

async fn put_version(
    console: &Console,
    staff: &Staff,
    code: &str,
    form: &DepartmentForm,
) -> Result<Result<Department, Problem>, Failure> {
    let sent = console
        .api
        .send::<Department>(
            staff,
            reqwest::Method::PUT,
            &format!("/v1/departments/{}", encode_component(code)),
            &form.body(),
        )
        .await;
    match sent {
        Ok(d) => Ok(Ok(d)),
        Err(e) => Ok(Err(form_problem(e)?)),
    }
}

async fn create_department(
    console: web::Data<Console>,
    posted: Posted<DepartmentForm>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Departments)?;
    let code = form.code.trim().to_string();
    let problem = if code.is_empty() {
        Problem {
            status: 400,
            code: "invalid-field".into(),
            detail: "部署コードが入力されていません。".into(),
            action: "空白を含まない1〜20文字の部署コードを入力してください。".into(),
            field: Some("code".into()),
            support_id: None,
        }
    } else {
        match put_version(&console, &staff, &code, &form).await? {
            Ok(d) => return Ok(view::see_other(&staff, &format!("{}?done=put", d.href()))),
            Err(p) => p,
        }
    };
    let page = DepartmentsPage {
        layout: Layout::new(&staff, Screen::Departments, "部署管理"),
        departments: departments(&console, &staff).await?,
        errors: beside(problem, DEPARTMENT_FIELDS, DEPARTMENT_CODES),
        form,
    };
    view::page(&staff, &page)
}

#[derive(Template)]
#[template(path = "departments_item.html")]
struct DepartmentPage {
    layout: Layout,
    d: Department,
    form: DepartmentForm,
    errors: Errors,
    end_valid_to: String,
    end_errors: Errors,
    done: &'static str,
}

impl DepartmentPage {
    fn new(staff: &Staff, d: Department) -> DepartmentPage {
        DepartmentPage {
            layout: Layout::new(staff, Screen::Departments, "部署の詳細"),
            form: DepartmentForm::of(&d),
            end_valid_to: d.valid_to.clone().unwrap_or_default(),
            d,
            errors: Errors::default(),
            end_errors: Errors::default(),
            done: "",
        }
    }
}

async fn department(console: &Console, staff: &Staff, code: &str) -> Result<Department, Failure> {
    Ok(console
        .api
        .get(
            staff,
            &format!("/v1/departments/{}", encode_component(code)),
        )
        .await?)
}

async fn show_department(
    console: web::Data<Console>,
    staff: Staff,
    code: web::Path<String>,
    done: web::Query<Done>,
) -> Result<HttpResponse, Failure> {
    view::require(&staff, Screen::Departments)?;
    let mut page = DepartmentPage::new(&staff, department(&console, &staff, &code).await?);
    page.done = match done.done.as_deref() {
        Some("put") => "部署を登録しました。",
        Some("ended") => "部署の終了日を設定しました。",
        _ => "",
    };
    view::page(&staff, &page)
}

async fn put_department(
    console: web::Data<Console>,
    posted: Posted<DepartmentForm>,
    code: web::Path<String>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Departments)?;
    let problem = match put_version(&console, &staff, &code, &form).await? {
        Ok(d) => return Ok(view::see_other(&staff, &format!("{}?done=put", d.href()))),
        Err(p) => p,
    };
    let mut page = DepartmentPage::new(&staff, department(&console, &staff, &code).await?);
    page.form = form;
    page.errors = beside(problem, DEPARTMENT_FIELDS, DEPARTMENT_CODES);
    view::page(&staff, &page)
}

async fn end_department(
    console: web::Data<Console>,
    posted: Posted<ValidToForm>,
    code: web::Path<String>,
) -> Result<HttpResponse, Failure> {
    let Posted { staff, form, .. } = posted;
    view::require(&staff, Screen::Departments)?;
    let body = serde_json::json!({ "valid_to": form.valid_to.trim() });
    let sent = console
        .api
        .post::<Department>(
            &staff,
            &format!("/v1/departments/{}/valid-to", encode_component(&code)),
            &body,
        )
        .await;
    let mut problem = match sent {
        Ok(d) => return Ok(view::see_other(&staff, &format!("{}?done=ended", d.href()))),
        Err(e) => form_problem(e)?,
    };
    let mut page = DepartmentPage::new(&staff, department(&console, &staff, &code).await?);
    page.end_valid_to = form.valid_to;
    // Every refusal of this form concerns its one date.
    problem.field = Some("valid_to".into());
    page.end_errors = Errors::from_problem(problem, &["valid_to"]);
    view::page(&staff, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn department_codes_are_one_safe_path_segment() {
        assert_eq!(encode_component("soumu-01"), "soumu-01");
        assert_eq!(encode_component("a/b?c"), "a%2Fb%3Fc");
        assert_eq!(encode_component("総務"), "%E7%B7%8F%E5%8B%99");
    }

    #[test]
    fn problems_go_beside_the_field_the_api_or_their_code_names() {
        let p = Problem {
            status: 400,
            code: "invalid-field".into(),
            field: Some("name".into()),
            ..Problem::default()
        };
        assert!(
            beside(p, DEPARTMENT_FIELDS, DEPARTMENT_CODES)
                .on("name")
                .is_some()
        );
        let p = Problem {
            status: 400,
            code: "weak-password".into(),
            ..Problem::default()
        };
        assert!(
            beside(p, NEW_USER_FIELDS, NEW_USER_CODES)
                .on("password")
                .is_some()
        );
        let p = Problem {
            status: 409,
            code: "something-else".into(),
            ..Problem::default()
        };
        assert!(
            !beside(p, NEW_USER_FIELDS, NEW_USER_CODES)
                .general
                .is_empty()
        );
    }

    #[test]
    fn excluded_procedures_may_be_one_a_line_or_separated() {
        let form = DepartmentForm {
            name: " 住民課 ".into(),
            excluded_procedures: "JT00000000000201\r\n JT00000000000202, JT00000000000203\n".into(),
            ..DepartmentForm::default()
        };
        let body = form.body();
        assert_eq!(body.name, "住民課");
        assert_eq!(
            body.excluded_procedures,
            ["JT00000000000201", "JT00000000000202", "JT00000000000203"]
        );
        assert!(body.valid_from.is_none());
    }
}
