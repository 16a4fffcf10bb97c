//! `GET /openapi.json` describes the code service's routes and their schemas.

use serde_json::Value;

use crate::helpers::spawn_app;

/// Follows a local `$ref` (`#/components/schemas/X`) to the schema it names.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected ref {r}"));
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

#[actix_web::test]
async fn the_openapi_document_describes_every_code_route_without_a_token() {
    let app = spawn_app().await;
    // No bearer token: the description is public.
    let res = app
        .api
        .http
        .get(app.api.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "application/json"
    );
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["info"]["title"], "chukan API");

    let paths = &doc["paths"];
    let post = &paths["/v1/codes/acquisitions"]["post"];
    let status = &paths["/v1/codes/acquisitions/{id}"]["get"];
    let holding = &paths["/v1/codes/{addressee}"]["get"];
    let query = &paths["/v1/codes/holdings/query"]["post"];
    // The number-in-the-URL form is kept one release, marked deprecated.
    assert_eq!(holding["deprecated"], true);
    assert!(query["deprecated"].is_null());
    for op in [post, status, holding, query] {
        assert!(op.is_object(), "missing operation in {paths}");
        // Who may call it: the bearer scheme's roles, enforced by the gate.
        assert_eq!(
            op["security"][0]["bearer"],
            serde_json::json!(["business_staff", "system_client"])
        );
        assert_eq!(op["tags"][0], "code");
    }
    // Only the documented methods: no GET on the collection, no POST on a request.
    assert!(paths["/v1/codes/acquisitions"]["get"].is_null());
    assert!(paths["/v1/codes/acquisitions/{id}"]["post"].is_null());
    assert!(post["summary"].as_str().unwrap().contains("符号取得"));

    // Every status the handler can answer, errors as problem+json.
    for code in ["202", "200", "400", "401", "403", "413", "503"] {
        assert!(
            post["responses"][code].is_object(),
            "POST response {code} undocumented"
        );
    }
    for code in ["400", "401", "403", "413", "503"] {
        let problem = &post["responses"][code]["content"]["application/problem+json"]["schema"];
        assert_eq!(problem["$ref"], "#/components/schemas/Problem", "{code}");
    }
    assert!(post["responses"]["202"]["headers"]["Location"].is_object());
    assert_eq!(
        status["responses"]["404"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem"
    );

    // The request schema: both fields required, each with its identifier's pattern.
    let schemas = &doc["components"]["schemas"];
    let body = &post["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/AcquisitionRequest");
    let request = &schemas["AcquisitionRequest"];
    let required: Vec<&str> = request["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"integrated_addressee_number"));
    assert!(required.contains(&"resident_record_code"));
    let addressee = resolve(&doc, &request["properties"]["integrated_addressee_number"]);
    assert_eq!(addressee["type"], "string");
    assert_eq!(addressee["pattern"], "^[0-9]{1,15}$");
    assert!(
        addressee["description"]
            .as_str()
            .unwrap()
            .contains("団体内統合宛名番号")
    );
    let resident = resolve(&doc, &request["properties"]["resident_record_code"]);
    assert_eq!(resident["pattern"], "^[0-9]{11}$");

    // The path parameter carries the same rule.
    let param = &holding["parameters"][0];
    assert_eq!(param["name"], "addressee");
    assert_eq!(param["in"], "path");
    assert_eq!(resolve(&doc, &param["schema"])["pattern"], "^[0-9]{1,15}$");

    // The problem schema every error points at.
    let problem = &schemas["Problem"];
    for field in ["type", "title", "status", "code", "detail", "action"] {
        assert!(problem["properties"][field].is_object(), "Problem.{field}");
    }
    assert!(
        doc["components"]["securitySchemes"]["bearer"].is_object(),
        "protected operations name a scheme that exists"
    );
    app.api.shutdown().await;
}
