//! OpenAPI schema pieces the derive cannot state: request bodies whose fields follow a rule
//! across fields ("exactly one of as_of and period"), as `allOf` the derived object and the
//! rule. The handlers still deserialise the derived type; these only describe it exactly, for
//! the clients municipal vendors generate and for the fuzzer.

use serde_json::{Value, json};
use utoipa::openapi::{RefOr, schema::Schema};

/// Text without control characters (Unicode Cc: what `char::is_control` refuses).
pub const NO_CONTROL: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// A date as the API writes it: `YYYY-MM-DD` (alongside `format: date`, which JSON Schema
/// treats as an annotation only).
pub const DATE: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$";

/// A file's bytes as they are (`type: string, format: binary`): a download.
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        from_json(json!({"type": "string", "format": "binary"}))
    }
}

impl utoipa::ToSchema for Binary {}

/// A file's bytes, at least one: an upload.
pub struct NonEmptyBinary;

impl utoipa::PartialSchema for NonEmptyBinary {
    fn schema() -> RefOr<Schema> {
        from_json(json!({"type": "string", "format": "binary", "minLength": 1}))
    }
}

impl utoipa::ToSchema for NonEmptyBinary {}

/// The extension a rule-carrying body schema keeps its base and rule in until the published
/// document is completed (chukan-runtime merges the rule into the base object there).
pub const RULE_EXTENSION: &str = "x-chukan-body-rule";

/// A schema written as JSON (combinators and plain objects only: utoipa's model drops what it
/// does not know, so a rule travels as an extension instead, see [`with_rule`]).
pub fn from_json(value: Value) -> RefOr<Schema> {
    serde_json::from_value(value).unwrap_or_else(|_| RefOr::T(Schema::default()))
}

/// The component `base` (the derived object) with `rule` (any JSON Schema keywords, e.g. a
/// `oneOf`) merged into it in the published document. The rule is carried verbatim in an
/// extension: utoipa's schema model cannot hold `const`, `minItems` on untyped arrays and the
/// like.
pub fn with_rule(base: &str, rule: Value) -> RefOr<Schema> {
    use utoipa::openapi::{extensions::ExtensionsBuilder, schema::ObjectBuilder};
    let extensions = ExtensionsBuilder::new()
        .add(RULE_EXTENSION, json!({ "base": base, "rule": rule }))
        .build();
    RefOr::T(Schema::Object(
        ObjectBuilder::new().extensions(Some(extensions)).build(),
    ))
}

/// "Exactly one of `a` and `b`" (the other absent or null).
pub fn exactly_one_of(a: (&str, Value), b: (&str, Value)) -> Value {
    let (a_name, a_schema) = a;
    let (b_name, b_schema) = b;
    json!({
        "oneOf": [
            {
                "type": "object",
                "required": [a_name],
                "properties": { a_name: a_schema, b_name: { "type": "null" } }
            },
            {
                "type": "object",
                "required": [b_name],
                "properties": { b_name: b_schema, a_name: { "type": "null" } }
            }
        ]
    })
}

/// Declares a documented request body: `$name` is the component `$base` with `$rule` merged
/// into it (see [`with_rule`]).
#[macro_export]
macro_rules! body_schema {
    ($(#[$doc:meta])* $name:ident = $base:literal + $rule:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::schema::with_rule($base, $rule)
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_rule_travels_verbatim_to_the_document() {
        let rule = exactly_one_of(
            ("as_of", json!({"type": "string"})),
            ("ids", json!({"type": "array", "minItems": 1, "const": 1})),
        );
        let v = serde_json::to_value(with_rule("X", rule.clone())).unwrap();
        assert_eq!(v[RULE_EXTENSION]["base"], "X");
        assert_eq!(v[RULE_EXTENSION]["rule"], rule, "nothing dropped");
    }
}
