//! `chukan openapi`: the merged OpenAPI document without a running server (what municipal
//! vendors generate their clients from), and the role × operation matrix docs/api.md shows,
//! both from the services' own annotations.

use clap::Args;
use serde_json::Value;

/// Roles in the order the matrix shows them.
const ROLES: [(&str, &str); 4] = [
    ("system_admin", "システム管理者"),
    ("business_staff", "業務担当者"),
    ("system_client", "連携システム"),
    ("platform_operator", "プラットフォーム運用者"),
];

#[derive(Debug, Args)]
pub struct OpenApiArgs {
    /// Print who may call each operation as a Markdown table instead of the document.
    #[arg(long)]
    pub role_matrix: bool,
    /// Only this target's part, as its own pods serve it at `/openapi.json` (the chart's
    /// routing at the entry is checked against it); default: the whole API.
    #[arg(long, value_enum)]
    pub target: Option<crate::cli::Target>,
}

/// Every service's part, merged and completed: the whole API, as the entry serves it at
/// [`chukan_runtime::ENTRY_OPENAPI_PATH`] and a `--target=all` process at `/openapi.json`.
pub fn document() -> Value {
    document_for(crate::cli::Target::All)
}

/// The part of the API that `target` serves (what its `/openapi.json` shows).
pub fn document_for(target: crate::cli::Target) -> Value {
    chukan_runtime::openapi_json(
        crate::services::SERVICES
            .iter()
            .filter(|s| target.includes(s.target))
            .filter_map(|s| s.openapi.map(|part| part())),
    )
}

/// The route serving [`document`] at [`chukan_runtime::ENTRY_OPENAPI_PATH`], serialised once.
/// It is made from the services' compiled-in annotations, so it is fixed when the binary is
/// built and every pod of one release serves the same bytes.
pub fn entry_routes() -> anyhow::Result<chukan_runtime::Routes> {
    let body = actix_web::web::Bytes::from(serde_json::to_vec(&document())?);
    Ok(std::sync::Arc::new(move |cfg| {
        let body = body.clone();
        cfg.route(
            chukan_runtime::ENTRY_OPENAPI_PATH,
            actix_web::web::get().to(move || {
                let body = body.clone();
                async move {
                    actix_web::HttpResponse::Ok()
                        .content_type("application/json")
                        .insert_header(("Cache-Control", "public, max-age=300"))
                        .body(body)
                }
            }),
        );
    }))
}

/// The role × operation matrix of `doc` (a serialised OpenAPI document), sorted by path
/// and method: ✓ where the operation's `bearer` roles include the role.
pub fn role_matrix(doc: &Value) -> String {
    let mut rows = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in ["get", "put", "post", "delete", "patch"] {
                let op = &item[method];
                if !op.is_object() {
                    continue;
                }
                let roles: Option<Vec<&str>> = op["security"].as_array().and_then(|reqs| {
                    reqs.iter().find_map(|r| {
                        r["bearer"]
                            .as_array()
                            .map(|a| a.iter().filter_map(Value::as_str).collect())
                    })
                });
                let cells: Vec<&str> = ROLES
                    .iter()
                    .map(|(role, _)| match &roles {
                        None => "公開",
                        Some(r) if r.contains(role) => "✓",
                        Some(_) => "–",
                    })
                    .collect();
                let deprecated = if op["deprecated"] == Value::Bool(true) {
                    " (deprecated)"
                } else {
                    ""
                };
                rows.push(format!(
                    "| `{}` | `{path}`{deprecated} | `{}` | {} |",
                    method.to_uppercase(),
                    op["operationId"].as_str().unwrap_or(""),
                    cells.join(" | ")
                ));
            }
        }
    }
    let header = ROLES
        .iter()
        .map(|(role, ja)| format!("{ja} `{role}`"))
        .collect::<Vec<_>>()
        .join(" | ");
    let rule = "|---".repeat(3 + ROLES.len());
    let mut out = format!("| method | path | operation | {header} |\n{rule}|\n");
    for row in rows {
        out.push_str(&row);
        out.push('\n');
    }
    out
}

pub fn run(args: &OpenApiArgs) -> anyhow::Result<()> {
    let doc = document_for(args.target.unwrap_or(crate::cli::Target::All));
    if args.role_matrix {
        print!("{}", role_matrix(&doc));
    } else {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use actix_web::{App, test as web};

    use super::*;
    use crate::cli::Target;

    fn paths(doc: &Value) -> std::collections::BTreeSet<String> {
        doc["paths"].as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn each_target_documents_only_its_own_paths_and_the_whole_api_is_their_union() {
        let whole = paths(&document());
        let mut union = std::collections::BTreeSet::new();
        for service in crate::services::SERVICES {
            let own = paths(&document_for(service.target));
            assert!(own.is_subset(&whole), "{}", service.target.label());
            // No path is served by two targets: the entry routes each to exactly one.
            assert!(
                own.is_disjoint(&union),
                "{} repeats {:?}",
                service.target.label(),
                own.intersection(&union).collect::<Vec<_>>()
            );
            union.extend(own);
        }
        assert_eq!(union, whole);
        assert!(paths(&document_for(Target::Code)).contains("/v1/codes/acquisitions"));
        assert!(!paths(&document_for(Target::Code)).contains("/v1/inquiries"));
    }

    #[actix_rt::test]
    async fn the_entry_document_is_the_whole_api_whichever_target_serves_it() {
        let app = web::init_service(App::new().configure(|cfg| {
            let routes = entry_routes().unwrap();
            routes(cfg)
        }))
        .await;
        let res = web::call_service(
            &app,
            web::TestRequest::get()
                .uri(chukan_runtime::ENTRY_OPENAPI_PATH)
                .to_request(),
        )
        .await;
        assert!(res.status().is_success());
        let body: Value = web::read_body_json(res).await;
        assert_eq!(paths(&body), paths(&document()));
    }
}
