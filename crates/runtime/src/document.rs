//! The published OpenAPI document, completed with what the shared edge can answer on every
//! operation, so that each service documents only the answers of its own.
//!
//! Whatever an operation does, the edge and the extractors may answer before it runs: 400
//! (a NUL character anywhere, a malformed path id, query or JSON body), 401/403 (the gate, on
//! an operation that names roles), 413/415 (a JSON body too large or not JSON), 500 and 503
//! (a failure, a dependency down or service hours). An operation that already documents a
//! status keeps its own description.

use serde_json::{Value, json};

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {
            "application/problem+json": {
                "schema": { "$ref": "#/components/schemas/Problem" }
            }
        }
    })
}

/// Adds `status` to `responses` unless the operation documents it already.
fn ensure(responses: &mut serde_json::Map<String, Value>, status: &str, description: &str) {
    responses
        .entry(status.to_owned())
        .or_insert_with(|| problem(description));
}

/// What the server asserts of a `format` (JSON Schema 2020-12 treats formats as annotations
/// only, so a client or a fuzzer may send `""` for a date): stated as a pattern too.
fn format_pattern(format: &str) -> Option<&'static str> {
    match format {
        "date" => Some(chukan_core::schema::DATE),
        "date-time" => Some(
            "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$",
        ),
        "uuid" => {
            Some("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
        }
        _ => None,
    }
}

/// Adds the pattern of its format to every string schema under `value` that has none.
fn state_formats(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let pattern = map
                .get("format")
                .and_then(Value::as_str)
                .and_then(format_pattern);
            if let Some(pattern) = pattern
                && !map.contains_key("pattern")
            {
                map.insert("pattern".into(), Value::String(pattern.into()));
            }
            map.values_mut().for_each(state_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(state_formats),
        _ => {}
    }
}

/// Merges `rule` into `base`: objects key by key, anything else replaced.
fn merge(base: &mut Value, rule: &Value) {
    match (base, rule) {
        (Value::Object(b), Value::Object(r)) => {
            for (k, v) in r {
                match b.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, r) => *b = r.clone(),
    }
}

/// A body schema declared with `chukan_core::body_schema!` (its base component and a rule, in
/// an extension) becomes one object: the base with the rule merged in. Tools (and fuzzers)
/// handle a plain object with a `oneOf` far better than an `allOf` over a reference.
fn flatten_body_schemas(doc: &mut Value) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let snapshot = schemas.clone();
    for schema in schemas.values_mut() {
        let Some(spec) = schema.get(chukan_core::schema::RULE_EXTENSION).cloned() else {
            continue;
        };
        let Some(base) = spec["base"].as_str().and_then(|name| snapshot.get(name)) else {
            continue;
        };
        let mut merged = base.clone();
        merge(&mut merged, &spec["rule"]);
        *schema = merged;
    }
}

/// Everything the published document states beyond the services' parts: the edge's answers on
/// every operation, rule-carrying bodies as one object, formats as patterns.
pub fn complete(doc: &mut Value) {
    complete_responses(doc);
    flatten_body_schemas(doc);
    state_formats(doc);
}

/// Completes every operation of `doc` (a serialised document) with the answers of the edge.
pub fn complete_responses(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let protected = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            let json_body = op
                .pointer("/requestBody/content/application~1json")
                .is_some();
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            ensure(
                responses,
                "400",
                "要求の形式が不正です (invalid-character: NUL を含む; invalid-path, invalid-query, \
                 invalid-field, malformed-json: 識別子・クエリ・本文の形式)",
            );
            if protected {
                ensure(
                    responses,
                    "401",
                    "認証トークンがないか無効です (unauthenticated)",
                );
                ensure(
                    responses,
                    "403",
                    "この操作の権限がありません (forbidden): 操作の security に挙げた役割が必要です",
                );
            }
            if json_body {
                ensure(
                    responses,
                    "413",
                    "リクエスト本文が大きすぎます (payload-too-large)",
                );
                ensure(
                    responses,
                    "415",
                    "Content-Type が application/json ではありません (unsupported-media-type)",
                );
            }
            ensure(responses, "500", "サーバ内部エラー (internal-error)");
            ensure(
                responses,
                "503",
                "サービス時間外、又は一時的に利用できません (outside-service-hours, \
                 service-unavailable); `Retry-After` 付き",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_is_merged_into_its_object_and_formats_become_patterns() {
        let mut doc = json!({"components": {"schemas": {
            "In": {"type": "object", "required": ["a"], "properties": {
                "a": {"type": "string", "format": "date"},
                "b": {"type": "array", "maxItems": 3}}},
            "InBody": {"type": "object", "x-chukan-body-rule": {"base": "In", "rule":
                {"oneOf": [{"required": ["a"]}], "properties": {"b": {"uniqueItems": true}}}}}
        }}});
        complete(&mut doc);
        let body = &doc["components"]["schemas"]["InBody"];
        assert!(body["x-chukan-body-rule"].is_null());
        assert_eq!(body["required"][0], "a");
        assert_eq!(body["oneOf"][0]["required"][0], "a");
        assert_eq!(body["properties"]["b"]["maxItems"], 3);
        assert_eq!(body["properties"]["b"]["uniqueItems"], true);
        assert_eq!(
            body["properties"]["a"]["pattern"],
            chukan_core::schema::DATE
        );
    }

    #[test]
    fn an_operation_gets_what_the_edge_can_answer_and_keeps_its_own() {
        let mut doc = json!({"paths": {"/v1/x": {
            "post": {
                "security": [{"bearer": ["business_staff"]}],
                "requestBody": {"content": {"application/json": {}}},
                "responses": {"201": {"description": "ok"}, "400": {"description": "mine"}}
            },
            "get": {"responses": {"200": {"description": "ok"}}}
        }}});
        complete_responses(&mut doc);
        let post = &doc["paths"]["/v1/x"]["post"]["responses"];
        for status in ["201", "400", "401", "403", "413", "415", "500", "503"] {
            assert!(post[status].is_object(), "{status}");
        }
        assert_eq!(post["400"]["description"], "mine");
        let get = &doc["paths"]["/v1/x"]["get"]["responses"];
        assert!(get["401"].is_null() && get["413"].is_null());
        assert!(get["400"].is_object() && get["503"].is_object());
    }
}
