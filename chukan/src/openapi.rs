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
}

/// Every service's part, merged and completed as the server publishes it at `/openapi.json`.
pub fn document() -> Value {
    chukan_runtime::openapi_json(
        crate::services::SERVICES
            .iter()
            .filter_map(|s| s.openapi.map(|part| part())),
    )
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
    let doc = document();
    if args.role_matrix {
        print!("{}", role_matrix(&doc));
    } else {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}
