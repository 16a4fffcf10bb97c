//! 部署 (departments): each department's 対象外事務手続コード (procedures it may not inquire
//! for, up to 480 — enhancement #7), kept here and announced to inquiry as
//! `department.changed` in the same transaction as the change.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use chukan_auth::{Caller, Role};
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

use crate::{AdminState, SCHEMA, api::AdminError};

/// Most excluded procedure codes one department may list (enhancement #7: 480 codes).
pub const MAX_EXCLUDED: usize = 480;

/// A department as stored and shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Department {
    /// 部署コード: 1–20 characters, no blanks (users' and clients' `department`).
    pub code: String,
    /// 部署名.
    pub name: String,
    /// 対象外事務手続コード (JT + 14 digits), at most 480.
    pub excluded_procedures: Vec<String>,
    pub revision: i64,
    pub updated_at: DateTime<Utc>,
}

/// `PUT /v1/departments/{code}` body: the department as it should be.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepartmentRequest {
    /// 部署名: 1–100 characters.
    pub name: String,
    /// 対象外事務手続コード; replaces the current list. At most 480.
    #[serde(default)]
    pub excluded_procedures: Vec<String>,
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

/// Validates a request and returns the name and the excluded codes, deduplicated in the
/// order given.
pub fn check_request(req: &DepartmentRequest) -> Result<(String, Vec<String>), AdminError> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AdminError::InvalidField {
            field: "name",
            detail_ja: "部署名は1文字以上100文字以内で指定してください。",
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
    Ok((name.to_owned(), codes))
}

fn from_row(r: &Row) -> Department {
    Department {
        code: r.get(0),
        name: r.get(1),
        excluded_procedures: r.get(2),
        revision: r.get(3),
        updated_at: r.get(4),
    }
}

/// Creates or replaces a department, bumps its revision and writes `department.changed` to
/// admin's outbox, all in `tx`.
pub async fn put(
    tx: &Transaction<'_>,
    tenant: &OrgCode,
    code: &str,
    name: &str,
    excluded: &[String],
) -> anyhow::Result<Department> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO admin.departments (tenant_id, code, name, excluded_procedures)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, code) DO UPDATE
                SET name = EXCLUDED.name, excluded_procedures = EXCLUDED.excluded_procedures,
                    revision = admin.departments.revision + 1, updated_at = now()
             RETURNING code, name, excluded_procedures, revision, updated_at",
        )
        .await?;
    let row = tx
        .query_one(&stmt, &[&tenant.as_str(), &code, &name, &excluded])
        .await?;
    let department = from_row(&row);
    let event = DepartmentChanged {
        tenant: tenant.as_str().to_owned(),
        code: department.code.clone(),
        name: department.name.clone(),
        excluded_procedures: department.excluded_procedures.clone(),
        revision: department.revision,
    };
    let msg = OutgoingMessage::new(tenant.as_str(), DEPARTMENT_CHANGED, event.encode_to_vec());
    chukan_mq::outbox::enqueue(tx, SCHEMA, &msg).await?;
    Ok(department)
}

async fn list(tx: &Transaction<'_>) -> Result<Vec<Department>, tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT code, name, excluded_procedures, revision, updated_at
             FROM admin.departments ORDER BY code",
        )
        .await?;
    Ok(tx.query(&stmt, &[]).await?.iter().map(from_row).collect())
}

async fn one(
    tx: &Transaction<'_>,
    code: &str,
) -> Result<Option<Department>, tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT code, name, excluded_procedures, revision, updated_at
             FROM admin.departments WHERE code = $1",
        )
        .await?;
    Ok(tx.query_opt(&stmt, &[&code]).await?.as_ref().map(from_row))
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
    summary = "部署の登録・変更 (create or replace a department)",
    description = "部署と対象外事務手続コード (480件まで) を登録又は置き換えます (システム管理者のみ)。変更は照会サービスへ直ちに通知され、その部署の照会に適用されます。",
    params(("code" = String, Path, description = "部署コード (空白を含まない1〜20文字)")),
    request_body(content = DepartmentRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "登録しました (the department as it is now)", body = Department),
        (status = 400, description = "項目の誤り (invalid-field, malformed-json)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません: system_admin が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "リクエスト本文が大きすぎます (payload-too-large)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type が application/json ではありません (unsupported-media-type)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn put_department(
    state: web::Data<AdminState>,
    caller: Caller,
    code: web::Path<String>,
    body: web::Json<DepartmentRequest>,
) -> Result<HttpResponse, AdminError> {
    caller.require_any(&[Role::SystemAdmin])?;
    check_code(&code)?;
    let (name, excluded) = check_request(&body)?;
    let tenant = tenant_of(&caller)?;
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant.as_str()).await?;
    let department = put(&tx, &tenant, &code, &name, &excluded).await?;
    tx.commit().await?;
    tracing::info!(tenant = %tenant, revision = department.revision, by = %caller.0.sub, "department saved");
    Ok(HttpResponse::Ok().json(department))
}

#[utoipa::path(
    get,
    path = "/v1/departments",
    tag = "departments",
    operation_id = "listDepartments",
    summary = "部署の一覧 (list departments)",
    description = "自団体の部署と対象外事務手続コードの一覧を返します (システム管理者のみ)。",
    responses(
        (status = 200, description = "部署の一覧", body = Vec<Department>),
        (status = 403, description = "権限がありません: system_admin が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn list_departments(
    state: web::Data<AdminState>,
    caller: Caller,
) -> Result<HttpResponse, AdminError> {
    caller.require_any(&[Role::SystemAdmin])?;
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant()).await?;
    let all = list(&tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(all))
}

#[utoipa::path(
    get,
    path = "/v1/departments/{code}",
    tag = "departments",
    operation_id = "getDepartment",
    summary = "部署の参照 (one department)",
    description = "部署と対象外事務手続コードを返します (システム管理者のみ)。",
    params(("code" = String, Path, description = "部署コード")),
    responses(
        (status = 200, description = "部署", body = Department),
        (status = 403, description = "権限がありません: system_admin が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "部署が見つかりません (not-found)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn get_department(
    state: web::Data<AdminState>,
    caller: Caller,
    code: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    caller.require_any(&[Role::SystemAdmin])?;
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant()).await?;
    let found = one(&tx, &code).await?;
    tx.commit().await?;
    found
        .map(|d| HttpResponse::Ok().json(d))
        .ok_or(AdminError::NotFound("部署"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(codes: Vec<String>) -> DepartmentRequest {
        DepartmentRequest {
            name: "税務課".into(),
            excluded_procedures: codes,
        }
    }

    #[test]
    fn codes_are_checked_deduplicated_and_capped_at_480() {
        let (name, codes) = check_request(&request(vec![
            "JT00000000000101".into(),
            " JT00000000000101".into(),
            "JT00000000000102".into(),
        ]))
        .unwrap();
        assert_eq!(name, "税務課");
        assert_eq!(codes, ["JT00000000000101", "JT00000000000102"]);

        let many: Vec<String> = (0..480).map(|i| format!("JT{i:014}")).collect();
        assert_eq!(check_request(&request(many.clone())).unwrap().1.len(), 480);
        let mut too_many = many;
        too_many.push("JT99999999999999".into());
        assert!(check_request(&request(too_many)).is_err());
        assert!(check_request(&request(vec!["JM00000000000001".into()])).is_err());
        assert!(check_code("ZEIMU-01").is_ok());
        assert!(check_code("").is_err());
        assert!(check_code("税務課").is_ok());
        assert!(check_code("税務 課").is_err());
        assert!(check_code(&"A".repeat(21)).is_err());
    }
}
