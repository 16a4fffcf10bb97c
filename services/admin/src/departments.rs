//! 部署 (departments): each department's 対象外事務手続コード (procedures it may not inquire
//! for, up to 480 — enhancement #7), kept here and announced to inquiry as
//! `department.changed` in the same transaction as the change.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, NaiveDate, Utc};
use chukan_auth::Caller;
use chukan_core::{
    Problem,
    ids::{OrgCode, ProcedureCode},
    problem::ProtectedRouteProblems,
};
use chukan_db::Transaction;
use chukan_mq::OutgoingMessage;
use chukan_proto::{DEPARTMENT_CHANGED, DepartmentChanged, Message as _};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::ToSchema;

use crate::{AdminState, SCHEMA, api::AdminError, domain::japan_today};

/// Most excluded procedure codes one department may list (enhancement #7: 480 codes).
pub const MAX_EXCLUDED: usize = 480;

/// One version of a department (有効期間): its name and excluded procedures from `valid_from`
/// to `valid_to` (inclusive, Japan dates; none is open-ended).
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct DepartmentPeriod {
    pub valid_from: NaiveDate,
    pub valid_to: Option<NaiveDate>,
    /// 部署名.
    pub name: String,
    /// 対象外事務手続コード (JT + 14 digits), at most 480.
    pub excluded_procedures: Vec<String>,
    /// Who recorded this period (a user id, or `cli`).
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
}

/// A department as shown: the period in force today (if any) and its whole history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Department {
    /// 部署コード: 1–20 characters, no blanks (users' and clients' `department`).
    pub code: String,
    /// Whether a period is in force today (Japan date).
    pub valid_today: bool,
    /// 部署名 of the period in force today, else of the nearest period (the next one, or the
    /// last one that ended).
    pub name: String,
    /// 対象外事務手続コード of that same period.
    pub excluded_procedures: Vec<String>,
    /// That period's first and last valid day.
    pub valid_from: NaiveDate,
    pub valid_to: Option<NaiveDate>,
    /// Every period, oldest first.
    pub history: Vec<DepartmentPeriod>,
    pub revision: i64,
    pub updated_at: DateTime<Utc>,
}

/// `PUT /v1/departments/{code}` body: the department as it should be from `valid_from` on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepartmentRequest {
    /// 部署名: 1–100 characters, not blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^(?=.*[^\\s])[^\\u0000-\\u001F\\u007F-\\u009F]{1,100}$"
    )]
    pub name: String,
    /// 対象外事務手続コード (JT + 14 digits; blanks around a code are ignored); replaces the list
    /// from `valid_from` on. At most 480.
    #[serde(default)]
    #[schema(max_items = 480, inline, value_type = Vec<ExcludedProcedure>)]
    pub excluded_procedures: Vec<String>,
    /// First day of this version (Japan date), today or later; default today. The version
    /// before it ends the day before; versions planned from this day on are replaced.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub valid_from: Option<NaiveDate>,
    /// Last day of this version (inclusive); default open-ended.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub valid_to: Option<NaiveDate>,
}

/// One 対象外事務手続コード as sent: JT + 14 digits, blanks around it ignored.
#[derive(ToSchema)]
#[schema(pattern = "^\\s*JT[0-9]{14}\\s*$")]
pub struct ExcludedProcedure(#[allow(dead_code)] String);

/// `POST /v1/departments/{code}/valid-to` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepartmentEnd {
    /// The department's last valid day (Japan date), today or later.
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub valid_to: NaiveDate,
}

/// Checks a department code (the bulk inquiry file's 部署コード is 20 characters wide).
pub fn check_code(code: &str) -> Result<(), AdminError> {
    let ok = (1..=20).contains(&code.chars().count())
        && !code.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(AdminError::InvalidField {
            field: "code",
            detail_ja: "部署コードは空白を含まない1〜20文字で指定してください。",
        })
    }
}

/// A checked version to record: name, excluded codes (deduplicated in the order given) and
/// its period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPeriod {
    pub name: String,
    pub excluded: Vec<String>,
    pub valid_from: NaiveDate,
    pub valid_to: Option<NaiveDate>,
}

/// Validates a request against `today` (Japan date): no version may start in the past.
pub fn check_request(req: &DepartmentRequest, today: NaiveDate) -> Result<NewPeriod, AdminError> {
    // Counted as sent (not trimmed): the document's maxLength says the same.
    let name = req.name.trim();
    if name.is_empty() || req.name.chars().count() > 100 || req.name.chars().any(char::is_control) {
        return Err(AdminError::InvalidField {
            field: "name",
            detail_ja: "部署名は制御文字を含まない1文字以上100文字以内で指定してください。",
        });
    }
    if req.excluded_procedures.len() > MAX_EXCLUDED {
        return Err(AdminError::InvalidField {
            field: "excluded_procedures",
            detail_ja: "対象外事務手続コードは480件以内で指定してください。",
        });
    }
    let mut codes: Vec<String> = Vec::with_capacity(req.excluded_procedures.len());
    for code in &req.excluded_procedures {
        let code = ProcedureCode::parse(code.trim()).map_err(|_| AdminError::InvalidField {
            field: "excluded_procedures",
            detail_ja: "対象外事務手続コードは「JT」と14桁の数字で指定してください。",
        })?;
        if !codes.iter().any(|c| c == code.as_str()) {
            codes.push(code.as_str().to_owned());
        }
    }
    let valid_from = req.valid_from.unwrap_or(today);
    if valid_from < today {
        return Err(AdminError::RetroactiveChange);
    }
    if req.valid_to.is_some_and(|to| to < valid_from) {
        return Err(AdminError::InvalidPeriod);
    }
    Ok(NewPeriod {
        name: name.to_owned(),
        excluded: codes,
        valid_from,
        valid_to: req.valid_to,
    })
}

/// Where `new` goes in `history` (oldest first): the periods it leaves as they are, the one
/// before it cut to end the day before, and `new` itself. Versions starting on or after
/// `new.valid_from` are planned, not yet in force, so `new` replaces them.
pub fn with_new_period(
    history: &[DepartmentPeriod],
    new: DepartmentPeriod,
) -> Vec<DepartmentPeriod> {
    let day_before = new.valid_from.pred_opt().unwrap_or(new.valid_from);
    let mut out: Vec<DepartmentPeriod> = history
        .iter()
        .filter(|p| p.valid_from < new.valid_from)
        .cloned()
        .map(|mut p| {
            if p.valid_to.is_none_or(|to| to > day_before) {
                p.valid_to = Some(day_before);
            }
            p
        })
        .collect();
    out.push(new);
    out
}

/// `history` ended after `valid_to`: later planned periods dropped, the one running then cut.
/// None when no period is left to end (the department ended before `valid_to`).
pub fn ended(history: &[DepartmentPeriod], valid_to: NaiveDate) -> Option<Vec<DepartmentPeriod>> {
    let out: Vec<DepartmentPeriod> = history
        .iter()
        .filter(|p| p.valid_from <= valid_to)
        .cloned()
        .map(|mut p| {
            if p.valid_to.is_none_or(|to| to > valid_to) {
                p.valid_to = Some(valid_to);
            }
            p
        })
        .collect();
    let changed = out.len() != history.len() || out.iter().zip(history).any(|(a, b)| a != b);
    changed.then_some(out)
}

/// The period valid on `day`, else the nearest: the next to start, else the last to end.
pub fn period_on(history: &[DepartmentPeriod], day: NaiveDate) -> Option<&DepartmentPeriod> {
    history
        .iter()
        .find(|p| p.valid_from <= day && p.valid_to.is_none_or(|to| day <= to))
        .or_else(|| history.iter().find(|p| p.valid_from > day))
        .or_else(|| history.last())
}

fn period_from_row(r: &Row) -> DepartmentPeriod {
    DepartmentPeriod {
        valid_from: r.get(0),
        valid_to: r.get(1),
        name: r.get(2),
        excluded_procedures: r.get(3),
        recorded_by: r.get(4),
        recorded_at: r.get(5),
    }
}

/// Every period of a department, oldest first.
async fn periods(
    tx: &Transaction<'_>,
    code: &str,
) -> Result<Vec<DepartmentPeriod>, tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT valid_from, valid_to, name, excluded_procedures, recorded_by, recorded_at
             FROM admin.department_periods WHERE code = $1 ORDER BY valid_from",
        )
        .await?;
    Ok(tx
        .query(&stmt, &[&code])
        .await?
        .iter()
        .map(period_from_row)
        .collect())
}

/// Replaces a department's periods with `history` (only those that differ are written).
async fn store_periods(
    tx: &Transaction<'_>,
    tenant: &OrgCode,
    code: &str,
    before: &[DepartmentPeriod],
    history: &[DepartmentPeriod],
) -> Result<(), tokio_postgres::Error> {
    let delete = tx
        .prepare_cached("DELETE FROM admin.department_periods WHERE code = $1 AND valid_from = $2")
        .await?;
    let upsert = tx
        .prepare_cached(
            "INSERT INTO admin.department_periods
                 (tenant_id, code, valid_from, valid_to, name, excluded_procedures, recorded_by,
                  recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id, code, valid_from) DO UPDATE
                SET valid_to = EXCLUDED.valid_to, name = EXCLUDED.name,
                    excluded_procedures = EXCLUDED.excluded_procedures,
                    recorded_by = EXCLUDED.recorded_by, recorded_at = EXCLUDED.recorded_at",
        )
        .await?;
    for gone in before
        .iter()
        .filter(|b| !history.iter().any(|h| h.valid_from == b.valid_from))
    {
        tx.execute(&delete, &[&code, &gone.valid_from]).await?;
    }
    for p in history.iter().filter(|h| !before.contains(h)) {
        tx.execute(
            &upsert,
            &[
                &tenant.as_str(),
                &code,
                &p.valid_from,
                &p.valid_to,
                &p.name,
                &p.excluded_procedures,
                &p.recorded_by,
                &p.recorded_at,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Locks the department row (creating it at revision 0 first) and bumps its revision:
/// concurrent changes of one department apply one after the other.
async fn lock_and_bump(
    tx: &Transaction<'_>,
    tenant: &OrgCode,
    code: &str,
) -> Result<(i64, DateTime<Utc>), tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO admin.departments (tenant_id, code, revision) VALUES ($1, $2, 1)
             ON CONFLICT (tenant_id, code) DO UPDATE
                SET revision = admin.departments.revision + 1, updated_at = now()
             RETURNING revision, updated_at",
        )
        .await?;
    let row = tx.query_one(&stmt, &[&tenant.as_str(), &code]).await?;
    Ok((row.get(0), row.get(1)))
}

/// As [`lock_and_bump`], for a department that must exist already (None if it does not).
async fn lock_and_bump_existing(
    tx: &Transaction<'_>,
    code: &str,
) -> Result<Option<(i64, DateTime<Utc>)>, tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(
            "UPDATE admin.departments SET revision = revision + 1, updated_at = now()
             WHERE code = $1 RETURNING revision, updated_at",
        )
        .await?;
    Ok(tx
        .query_opt(&stmt, &[&code])
        .await?
        .map(|row| (row.get(0), row.get(1))))
}

fn shown(
    code: &str,
    history: Vec<DepartmentPeriod>,
    revision: i64,
    updated_at: DateTime<Utc>,
    today: NaiveDate,
) -> Option<Department> {
    let now = period_on(&history, today)?.clone();
    Some(Department {
        code: code.to_owned(),
        valid_today: now.valid_from <= today && now.valid_to.is_none_or(|to| today <= to),
        name: now.name,
        excluded_procedures: now.excluded_procedures,
        valid_from: now.valid_from,
        valid_to: now.valid_to,
        history,
        revision,
        updated_at,
    })
}

/// Writes `history` as the department's periods, bumps its revision and announces the whole
/// history (`department.changed`) in admin's outbox, all in `tx`.
#[allow(clippy::too_many_arguments)]
async fn save(
    tx: &Transaction<'_>,
    tenant: &OrgCode,
    code: &str,
    before: &[DepartmentPeriod],
    history: Vec<DepartmentPeriod>,
    (revision, updated_at): (i64, DateTime<Utc>),
    today: NaiveDate,
) -> anyhow::Result<Department> {
    store_periods(tx, tenant, code, before, &history).await?;
    let department = shown(code, history, revision, updated_at, today)
        .ok_or_else(|| anyhow::anyhow!("a department without periods"))?;
    let event = DepartmentChanged {
        tenant: tenant.as_str().to_owned(),
        code: department.code.clone(),
        name: department.name.clone(),
        excluded_procedures: department.excluded_procedures.clone(),
        revision: department.revision,
        periods: department
            .history
            .iter()
            .map(|p| chukan_proto::DepartmentPeriod {
                valid_from: p.valid_from.to_string(),
                valid_to: p.valid_to.map(|d| d.to_string()).unwrap_or_default(),
                name: p.name.clone(),
                excluded_procedures: p.excluded_procedures.clone(),
            })
            .collect(),
    };
    let msg = OutgoingMessage::new(tenant.as_str(), DEPARTMENT_CHANGED, event.encode_to_vec());
    chukan_mq::outbox::enqueue(tx, SCHEMA, &msg).await?;
    Ok(department)
}

/// Records a new version of a department from `new.valid_from` on (creating the department if
/// it is new) and announces it, all in `tx`. `by` is the user id (or `cli`).
pub async fn put(
    tx: &Transaction<'_>,
    tenant: &OrgCode,
    code: &str,
    new: &NewPeriod,
    by: &str,
    now: DateTime<Utc>,
    today: NaiveDate,
) -> anyhow::Result<Department> {
    // Lock first, so the history read below is the one this change builds on.
    let revision = lock_and_bump(tx, tenant, code).await?;
    let before = periods(tx, code).await?;
    let history = with_new_period(
        &before,
        DepartmentPeriod {
            valid_from: new.valid_from,
            valid_to: new.valid_to,
            name: new.name.clone(),
            excluded_procedures: new.excluded.clone(),
            recorded_by: by.to_owned(),
            recorded_at: now,
        },
    );
    save(tx, tenant, code, &before, history, revision, today).await
}

async fn list(
    tx: &Transaction<'_>,
    today: NaiveDate,
) -> Result<Vec<Department>, tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT d.code, d.revision, d.updated_at, p.valid_from, p.valid_to, p.name,
                    p.excluded_procedures, p.recorded_by, p.recorded_at
             FROM admin.departments d JOIN admin.department_periods p USING (tenant_id, code)
             ORDER BY d.code, p.valid_from",
        )
        .await?;
    let mut out: Vec<Department> = Vec::new();
    let mut current: Option<(String, i64, DateTime<Utc>, Vec<DepartmentPeriod>)> = None;
    for r in tx.query(&stmt, &[]).await? {
        let code: String = r.get(0);
        let period = DepartmentPeriod {
            valid_from: r.get(3),
            valid_to: r.get(4),
            name: r.get(5),
            excluded_procedures: r.get(6),
            recorded_by: r.get(7),
            recorded_at: r.get(8),
        };
        match &mut current {
            Some((c, _, _, history)) if *c == code => history.push(period),
            _ => {
                if let Some((c, rev, at, history)) = current.take() {
                    out.extend(shown(&c, history, rev, at, today));
                }
                current = Some((code, r.get(1), r.get(2), vec![period]));
            }
        }
    }
    if let Some((c, rev, at, history)) = current {
        out.extend(shown(&c, history, rev, at, today));
    }
    Ok(out)
}

async fn one(
    tx: &Transaction<'_>,
    code: &str,
    today: NaiveDate,
) -> Result<Option<Department>, tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached("SELECT revision, updated_at FROM admin.departments WHERE code = $1")
        .await?;
    let Some(row) = tx.query_opt(&stmt, &[&code]).await? else {
        return Ok(None);
    };
    let history = periods(tx, code).await?;
    Ok(shown(code, history, row.get(0), row.get(1), today))
}

fn tenant_of(caller: &Caller) -> Result<OrgCode, AdminError> {
    OrgCode::parse(caller.tenant())
        .map_err(|e| AdminError::Internal(anyhow::anyhow!("token carries an invalid tenant: {e}")))
}

#[utoipa::path(
    put,
    path = "/v1/departments/{code}",
    tag = "departments",
    operation_id = "putDepartment",
    summary = "部署の登録・変更 (record a version of a department)",
    description = "部署と対象外事務手続コード (480件まで) を、valid_from（既定は本日）から有効な新しい版として登録します (システム管理者のみ)。\
過去に遡る変更はできません: 前の版は valid_from の前日で終了し、valid_from 以降に予定されていた版は置き換えられます。\
変更は照会サービスへ直ちに通知され、照会する日に有効な版が適用されます。",
    params(("code" = String, Path, description = "部署コード (空白を含まない1〜20文字)", pattern = "^[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]{1,20}$")),
    request_body(content = DepartmentRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "登録しました (the department as it is now, with its history)", body = Department),
        (status = 400, description = "項目の誤り (invalid-field, retroactive-change, invalid-period, malformed-json)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません: system_admin が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "リクエスト本文が大きすぎます (payload-too-large)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type が application/json ではありません (unsupported-media-type)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin"]))
)]
#[tracing::instrument(skip_all)]
pub async fn put_department(
    state: web::Data<AdminState>,
    caller: Caller,
    code: web::Path<String>,
    body: web::Json<DepartmentRequest>,
) -> Result<HttpResponse, AdminError> {
    check_code(&code)?;
    let today = japan_today(&*state.clock);
    let new = check_request(&body, today)?;
    let tenant = tenant_of(&caller)?;
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
    let department = put(
        &tx,
        &tenant,
        &code,
        &new,
        &caller.0.sub,
        state.clock.now(),
        today,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(tenant = %tenant, revision = department.revision, by = %caller.0.sub, "department saved");
    Ok(HttpResponse::Ok().json(department))
}

#[utoipa::path(
    post,
    path = "/v1/departments/{code}/valid-to",
    tag = "departments",
    operation_id = "endDepartment",
    summary = "部署の有効期間の終了 (end a department)",
    description = "部署の最終有効日（本日以降）を設定します (システム管理者のみ)。その日より後に予定されていた版は取り消されます。過去に遡る終了はできません。",
    params(("code" = String, Path, description = "部署コード")),
    request_body(content = DepartmentEnd, content_type = "application/json"),
    responses(
        (status = 200, description = "設定しました", body = Department),
        (status = 400, description = "日付の誤り (retroactive-change, invalid-period, malformed-json)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません: system_admin が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "部署が見つかりません (not-found)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type が application/json ではありません (unsupported-media-type)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin"]))
)]
#[tracing::instrument(skip_all)]
pub async fn end_department(
    state: web::Data<AdminState>,
    caller: Caller,
    code: web::Path<String>,
    body: web::Json<DepartmentEnd>,
) -> Result<HttpResponse, AdminError> {
    let today = japan_today(&*state.clock);
    if body.valid_to < today {
        return Err(AdminError::RetroactiveChange);
    }
    let tenant = tenant_of(&caller)?;
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
    // Locks and bumps an existing department only: an unknown code is a 404, not a new row.
    let Some(revision) = lock_and_bump_existing(&tx, &code).await? else {
        return Err(AdminError::NotFound("部署"));
    };
    let before = periods(&tx, &code).await?;
    // The department starts after the day asked: it cannot end before it begins.
    if before.first().is_some_and(|p| p.valid_from > body.valid_to) {
        return Err(AdminError::InvalidPeriod);
    }
    // It already ended: that end is history.
    if before
        .last()
        .is_some_and(|p| p.valid_to.is_some_and(|to| to < today))
    {
        return Err(AdminError::RetroactiveChange);
    }
    let department = match ended(&before, body.valid_to) {
        Some(history) => {
            let d = save(&tx, &tenant, &code, &before, history, revision, today).await?;
            tx.commit().await?;
            d
        }
        // Already so: nothing is written (the revision bump rolls back).
        None => {
            drop(tx);
            let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
            let d = one(&tx, &code, today)
                .await?
                .ok_or(AdminError::NotFound("部署"))?;
            tx.commit().await?;
            d
        }
    };
    tracing::info!(tenant = %tenant, revision = department.revision, by = %caller.0.sub, valid_to = %body.valid_to, "department ended");
    Ok(HttpResponse::Ok().json(department))
}

#[utoipa::path(
    get,
    path = "/v1/departments",
    tag = "departments",
    operation_id = "listDepartments",
    summary = "部署の一覧 (list departments)",
    description = "自団体の部署を、本日有効な版（なければ直近の版）と有効期間の履歴とともに返します (システム管理者のみ)。",
    responses(
        (status = 200, description = "部署の一覧", body = Vec<Department>),
        (status = 403, description = "権限がありません: system_admin が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin"]))
)]
#[tracing::instrument(skip_all)]
pub async fn list_departments(
    state: web::Data<AdminState>,
    caller: Caller,
) -> Result<HttpResponse, AdminError> {
    let today = japan_today(&*state.clock);
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant()).await?;
    let all = list(&tx, today).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(all))
}

#[utoipa::path(
    get,
    path = "/v1/departments/{code}",
    tag = "departments",
    operation_id = "getDepartment",
    summary = "部署の参照 (one department)",
    description = "部署の本日有効な版と有効期間の履歴を返します (システム管理者のみ)。",
    params(("code" = String, Path, description = "部署コード")),
    responses(
        (status = 200, description = "部署", body = Department),
        (status = 403, description = "権限がありません: system_admin が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "部署が見つかりません (not-found)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin"]))
)]
#[tracing::instrument(skip_all)]
pub async fn get_department(
    state: web::Data<AdminState>,
    caller: Caller,
    code: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let today = japan_today(&*state.clock);
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant()).await?;
    let found = one(&tx, &code, today).await?;
    tx.commit().await?;
    found
        .map(|d| HttpResponse::Ok().json(d))
        .ok_or(AdminError::NotFound("部署"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn request(codes: Vec<String>) -> DepartmentRequest {
        DepartmentRequest {
            name: "税務課".into(),
            excluded_procedures: codes,
            valid_from: None,
            valid_to: None,
        }
    }

    fn period(from: &str, to: Option<&str>, name: &str) -> DepartmentPeriod {
        DepartmentPeriod {
            valid_from: d(from),
            valid_to: to.map(d),
            name: name.into(),
            excluded_procedures: vec![],
            recorded_by: "u".into(),
            recorded_at: DateTime::<Utc>::MIN_UTC,
        }
    }

    #[test]
    fn codes_are_checked_deduplicated_and_capped_at_480() {
        let today = d("2026-12-05");
        let new = check_request(
            &request(vec![
                "JT00000000000101".into(),
                " JT00000000000101".into(),
                "JT00000000000102".into(),
            ]),
            today,
        )
        .unwrap();
        assert_eq!(new.name, "税務課");
        assert_eq!(new.excluded, ["JT00000000000101", "JT00000000000102"]);
        assert_eq!((new.valid_from, new.valid_to), (today, None));

        let many: Vec<String> = (0..480).map(|i| format!("JT{i:014}")).collect();
        assert_eq!(
            check_request(&request(many.clone()), today)
                .unwrap()
                .excluded
                .len(),
            480
        );
        let mut too_many = many;
        too_many.push("JT99999999999999".into());
        assert!(check_request(&request(too_many), today).is_err());
        assert!(check_request(&request(vec!["JM00000000000001".into()]), today).is_err());
        assert!(check_code("ZEIMU-01").is_ok());
        assert!(check_code("").is_err());
        assert!(check_code("税務課").is_ok());
        assert!(check_code("税務 課").is_err());
        assert!(check_code(&"A".repeat(21)).is_err());
    }

    #[test]
    fn no_version_starts_in_the_past_or_ends_before_it_starts() {
        let today = d("2026-12-05");
        let mut r = request(vec![]);
        r.valid_from = Some(d("2026-12-04"));
        assert!(matches!(
            check_request(&r, today),
            Err(AdminError::RetroactiveChange)
        ));
        r.valid_from = Some(d("2027-04-01"));
        r.valid_to = Some(d("2027-03-31"));
        assert!(matches!(
            check_request(&r, today),
            Err(AdminError::InvalidPeriod)
        ));
    }

    #[test]
    fn a_new_version_closes_the_one_before_and_replaces_planned_ones() {
        let history = vec![period("2025-04-01", None, "A")];
        let h = with_new_period(&history, period("2026-12-05", None, "B"));
        assert_eq!(
            h,
            vec![
                period("2025-04-01", Some("2026-12-04"), "A"),
                period("2026-12-05", None, "B")
            ]
        );
        // A version planned for April, then replaced by one from January.
        let h = with_new_period(&h, period("2027-04-01", None, "C"));
        let h = with_new_period(&h, period("2027-01-01", Some("2027-12-31"), "D"));
        let names: Vec<_> = h.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "D"]);
        assert_eq!(h[1].valid_to, Some(d("2026-12-31")));
        assert_eq!(period_on(&h, d("2026-12-05")).unwrap().name, "B");
        assert_eq!(period_on(&h, d("2027-06-01")).unwrap().name, "D");
        assert_eq!(
            period_on(&h, d("2028-01-01")).unwrap().name,
            "D",
            "the last one"
        );
        // Ending: the running one is cut, planned ones dropped; ending again changes nothing.
        let e = ended(&h, d("2026-12-20")).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].valid_to, Some(d("2026-12-20")));
        assert!(ended(&e, d("2026-12-20")).is_none());
    }
}
