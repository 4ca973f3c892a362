//! The OpenAPI document: committed as docs/openapi.json, served as /openapi.json, and the
//! same routes the server serves.
//!
//! After changing a route or a type it documents, regenerate the committed file with
//! `ARBITER_WRITE_OPENAPI=1 cargo test -p arbiter-server --test it openapi` and commit it.

use reqwest::Method;

use crate::{Api, documented_routes, sample_path};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

#[test]
fn committed_document_is_current() {
    let generated = arbiter_server::openapi::document_json();
    if std::env::var_os("ARBITER_WRITE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is not what the code generates: regenerate it with \
         `ARBITER_WRITE_OPENAPI=1 cargo test -p arbiter-server --test it openapi` and commit it"
    );
    let document: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
}

/// Routes are registered only through `utoipa_axum::routes!` (documented by
/// construction): a plain `.route(` would serve something the document does not list. A
/// route that is not part of the JSON API (the dashboard's page, `/mcp`) says so on its
/// line: `// undocumented: <why>`.
#[test]
fn every_route_is_registered_documented() {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut undocumented = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(src)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (number, line) in text.lines().enumerate() {
                    if [".route(", ".route_service(", ".nest(", ".nest_service("]
                        .iter()
                        .any(|call| line.contains(call))
                        && !line.contains("// undocumented: ")
                    {
                        undocumented.push(format!("{}:{}: {}", path.display(), number + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "register routes with `.routes(routes!(handler))` and a `#[utoipa::path]`: {undocumented:#?}"
    );
}

arbiter_testkit::each_backend!(
    the_served_document_is_the_generated_one_and_every_route_exists,
    |url: String| async move {
        let api = Api::start(&url).await;
        let served = api.http.get(format!("{}/openapi.json", api.base)).send().await.unwrap();
        assert_eq!(served.headers()["content-type"], "application/json");
        assert_eq!(served.text().await.unwrap(), arbiter_server::openapi::document_json());
        for (method, template) in documented_routes() {
            let path = sample_path(&template, "default");
            let mut request = api.http.request(method.clone(), format!("{}{path}", api.base));
            if matches!(method, Method::POST | Method::PUT) {
                request = request.json(&serde_json::json!({}));
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            assert_ne!(status, 405, "{method} {template} is documented but not served");
            if status == 404 {
                let body: serde_json::Value = response.json().await.unwrap();
                assert!(
                    !body["message"].as_str().unwrap().starts_with("no route"),
                    "{method} {template} is documented but not served"
                );
            }
        }
    }
);

/// The document's patterns for namespaces, names and prefixes say what the core's parsers
/// accept: a client (or a fuzzer) that follows the document is not refused, and one that
/// does not is.
#[test]
fn the_documents_name_patterns_are_the_core_rules() {
    use arbiter_core::name::{Key, Namespace, Prefix};
    let document: serde_json::Value = serde_json::from_str(&arbiter_server::openapi::document_json()).unwrap();
    let parameters = &document["paths"]["/v1/ns/{ns}/kv/{key}"]["get"]["parameters"];
    let pattern = |name: &str, parameters: &serde_json::Value| {
        let found = parameters
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("parameter {name}"));
        regex::Regex::new(found["schema"]["pattern"].as_str().unwrap()).unwrap()
    };
    let ns = pattern("ns", parameters);
    let key = pattern("key", parameters);
    let prefix = pattern("prefix", &document["paths"]["/v1/ns/{ns}/kv"]["get"]["parameters"]);
    let samples = [
        "",
        "a",
        "A",
        "default",
        "team-a",
        "team_a",
        "-a",
        "_a",
        "a/b",
        "a//b",
        "/a",
        "a/",
        "a/./b",
        "a/../b",
        ".",
        "..",
        "...",
        ".a",
        "..a",
        "a.b",
        "a:b@c",
        "a b",
        "é",
        "a\nb",
        "repo/main",
        "x/",
        "loop/",
        "a-",
    ];
    for text in samples {
        assert_eq!(
            ns.is_match(text),
            text.parse::<Namespace>().is_ok(),
            "namespace {text:?}"
        );
        assert_eq!(key.is_match(text), text.parse::<Key>().is_ok(), "key {text:?}");
        assert_eq!(prefix.is_match(text), text.parse::<Prefix>().is_ok(), "prefix {text:?}");
    }
}
