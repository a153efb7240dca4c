//! Extracts of the providers' OpenAPI documents, for the documents that no package registry
//! publishes (LINE's): only the operations the project calls and the components they reference,
//! without documentation. The extract is committed (`tests/contract/extracts/`) so that a fresh
//! clone has it, and Prism reads it (unless `SWITCHBOARD_PRISM_DOCUMENTS=full`); whenever the full
//! document is present (`SWITCHBOARD_PROVIDER_SPECS`, or `shared/provider-specs` beside the
//! repository, as in CI) a test checks that the committed extract is exactly what this module
//! makes of it, so that it cannot drift from the provider's document.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

/// One extracted document: where the full document lies under the provider-specs directory (and
/// where the extract lies under `tests/contract/extracts/`), and the operations to keep.
struct Extract {
    document: &'static str,
    source: &'static str,
    operations: &'static [(&'static str, &'static str)],
}

const EXTRACTS: &[Extract] = &[Extract {
    document: "line/messaging-api.yml",
    source: "LINE's OpenAPI document messaging-api.yml (line/line-openapi, Apache-2.0)",
    // The calls of src/providers/line.rs (served by src/simulator/line.rs), and the chat
    // indicators (mark as read, loading animation) that the next LINE features call.
    operations: &[
        ("get", "/v2/bot/info"),
        ("get", "/v2/bot/channel/webhook/endpoint"),
        ("put", "/v2/bot/channel/webhook/endpoint"),
        ("post", "/v2/bot/channel/webhook/test"),
        ("get", "/v2/bot/profile/{userId}"),
        ("post", "/v2/bot/message/reply"),
        ("post", "/v2/bot/message/push"),
        ("get", "/v2/bot/message/{messageId}/content"),
        ("post", "/v2/bot/chat/markAsRead"),
        ("post", "/v2/bot/chat/loading/start"),
    ],
}];

/// Keys that only document: dropped wherever they are keywords (not where they name a property).
/// `x-` extensions are for code generators and documentation tools; `tags` only group operations.
fn documentation_only(key: &str) -> bool {
    matches!(key, "description" | "summary" | "example" | "examples" | "externalDocs" | "tags") || key.starts_with("x-")
}

/// Keys whose value maps names (properties, media types, status codes ...) to objects: the names
/// are kept whatever they are (LINE has properties called `title` and `description`).
fn names_objects(key: &str) -> bool {
    matches!(
        key,
        "paths"
            | "properties"
            | "patternProperties"
            | "schemas"
            | "responses"
            | "parameters"
            | "requestBodies"
            | "headers"
            | "securitySchemes"
            | "content"
            | "encoding"
            | "links"
            | "callbacks"
            | "variables"
            | "mapping"
    )
}

/// Keys whose value is data, not OpenAPI objects: copied as they are.
fn literal(key: &str) -> bool {
    matches!(key, "default" | "enum" | "const")
}

fn strip(value: &Value) -> Value {
    match value {
        Value::Mapping(map) => Value::Mapping(strip_object(map)),
        Value::Sequence(items) => Value::Sequence(items.iter().map(strip).collect()),
        other => other.clone(),
    }
}

fn strip_object(map: &Mapping) -> Mapping {
    let mut out = Mapping::new();
    for (key, value) in map {
        let name = key.as_str().unwrap_or_default();
        if documentation_only(name) {
            continue;
        }
        let kept = match value {
            Value::Mapping(named) if names_objects(name) => {
                let mut entries = Mapping::new();
                for (entry_name, entry) in named {
                    let mut entry = strip(entry);
                    // A Response Object must have a description (OpenAPI 3.0); it is kept, empty.
                    if name == "responses"
                        && let Value::Mapping(response) = &mut entry
                        && !response.contains_key("$ref")
                    {
                        response.insert("description".into(), "".into());
                    }
                    entries.insert(entry_name.clone(), entry);
                }
                Value::Mapping(entries)
            }
            _ if literal(name) => value.clone(),
            _ => strip(value),
        };
        out.insert(key.clone(), kept);
    }
    out
}

/// `(kind, name)` of a reference to a component (`#/components/schemas/Message`), whatever
/// follows the name; other references are refused (an extract must stand alone).
fn component_of(reference: &str) -> Result<(String, String), String> {
    let mut parts = reference
        .strip_prefix("#/components/")
        .ok_or_else(|| format!("reference {reference:?} is not to a component of the same document"))?
        .split('/');
    let unescape = |part: &str| part.replace("~1", "/").replace("~0", "~");
    match (parts.next(), parts.next()) {
        (Some(kind), Some(name)) if !kind.is_empty() && !name.is_empty() => Ok((unescape(kind), unescape(name))),
        _ => Err(format!("reference {reference:?} names no component")),
    }
}

/// The components a value refers to: `$ref`s, and the schemas a discriminator maps to (by
/// reference or, as OpenAPI allows, by bare schema name).
fn references(value: &Value, found: &mut Vec<(String, String)>) -> Result<(), String> {
    match value {
        Value::Mapping(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    (Some("$ref"), Value::String(reference)) => found.push(component_of(reference)?),
                    (Some("discriminator"), Value::Mapping(discriminator)) => {
                        if let Some(Value::Mapping(mapping)) = discriminator.get("mapping") {
                            for target in mapping.values() {
                                let target = target.as_str().ok_or("a discriminator mapping value is not a string")?;
                                found.push(if target.starts_with('#') {
                                    component_of(target)?
                                } else {
                                    ("schemas".to_owned(), target.to_owned())
                                });
                            }
                        }
                    }
                    _ => references(inner, found)?,
                }
            }
        }
        Value::Sequence(items) => {
            for item in items {
                references(item, found)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The extract of `full`: its top-level fields, the listed operations (with their path's common
/// fields), every component those reach, all security schemes; documentation removed everywhere.
/// Paths, operations and components keep the document's order, whatever the list's.
fn extract_of(full: &Value, operations: &[(&str, &str)]) -> Result<Value, String> {
    let document = full.as_mapping().ok_or("the document is not a YAML mapping")?;
    let paths = document.get("paths").and_then(Value::as_mapping).ok_or("the document has no paths")?;
    for (method, path) in operations {
        let item = paths.get(*path).ok_or_else(|| format!("the document has no path {path}"))?;
        if item.get(*method).is_none() {
            return Err(format!("the document has no operation {} {path}", method.to_uppercase()));
        }
    }
    let mut kept_paths = Mapping::new();
    for (path, item) in paths {
        let Some(path_name) = path.as_str().filter(|name| operations.iter().any(|(_, listed)| listed == name)) else {
            continue;
        };
        let item = item.as_mapping().ok_or_else(|| format!("path {path_name} is not a mapping"))?;
        let mut kept = Mapping::new();
        for (field, value) in item {
            let field_name = field.as_str().unwrap_or_default();
            let is_method = matches!(field_name, "get" | "put" | "post" | "delete" | "options" | "head" | "patch" | "trace");
            if !is_method || operations.contains(&(field_name, path_name)) {
                kept.insert(field.clone(), value.clone());
            }
        }
        kept_paths.insert(path.clone(), Value::Mapping(kept));
    }

    // The components reached from the kept paths, transitively (references in examples do not count).
    let components = document.get("components").and_then(Value::as_mapping).cloned().unwrap_or_default();
    let kept_paths = Value::Mapping(kept_paths);
    let mut pending = Vec::new();
    references(&strip(&kept_paths), &mut pending)?;
    let mut reached: BTreeSet<(String, String)> = BTreeSet::new();
    while let Some((kind, name)) = pending.pop() {
        if reached.contains(&(kind.clone(), name.clone())) {
            continue;
        }
        let component = components
            .get(kind.as_str())
            .and_then(|of_kind| of_kind.get(name.as_str()))
            .ok_or_else(|| format!("#/components/{kind}/{name} is referred to but not in the document"))?;
        references(&strip(component), &mut pending)?;
        reached.insert((kind, name));
    }
    let mut kept_components = Mapping::new();
    for (kind, of_kind) in &components {
        let kind_name = kind.as_str().unwrap_or_default();
        let Some(of_kind) = of_kind.as_mapping() else { continue };
        let mut kept = Mapping::new();
        for (name, component) in of_kind {
            let name_str = name.as_str().unwrap_or_default();
            // Security schemes are named by `security` requirements, not referred to.
            if kind_name == "securitySchemes" || reached.contains(&(kind_name.to_owned(), name_str.to_owned())) {
                kept.insert(name.clone(), component.clone());
            }
        }
        if !kept.is_empty() {
            kept_components.insert(kind.clone(), Value::Mapping(kept));
        }
    }

    let mut out = Mapping::new();
    for (key, value) in document {
        let value = match key.as_str() {
            Some("paths") => kept_paths.clone(),
            Some("components") if kept_components.is_empty() => continue,
            Some("components") => Value::Mapping(kept_components.clone()),
            _ => value.clone(),
        };
        out.insert(key.clone(), value);
    }
    Ok(Value::Mapping(strip_object(&out)))
}

/// Where the full documents are: `SWITCHBOARD_PROVIDER_SPECS` (which must exist when set), else
/// `shared/provider-specs` beside the repository when there is one (as CI has it), else `None`.
fn full_documents(repo: &Path) -> Result<Option<PathBuf>, String> {
    match std::env::var_os("SWITCHBOARD_PROVIDER_SPECS") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_dir() {
                Ok(Some(dir))
            } else {
                Err(format!("SWITCHBOARD_PROVIDER_SPECS={} is not a directory", dir.display()))
            }
        }
        _ => Ok(Some(repo.join("../shared/provider-specs")).filter(|dir| dir.is_dir())),
    }
}

fn committed_path(repo: &Path, extract: &Extract) -> PathBuf {
    repo.join("tests/contract/extracts").join(extract.document)
}

/// The file's text: a header naming the source and how to regenerate it, then the extract.
fn render(extract: &Extract, value: &Value) -> Result<String, String> {
    let yaml = serde_yaml::to_string(value).map_err(|e| format!("cannot write YAML: {e}"))?;
    Ok(format!(
        "# Extract of {}:\n\
         # only the operations that Switchboard calls and the components they reference, without\n\
         # descriptions, summaries, examples, tags and x- extensions. Written by tests/contract/extract.rs\n\
         # from the full document; do not edit. Regenerate with\n\
         #   SWITCHBOARD_WRITE_EXTRACTS=1 SWITCHBOARD_PROVIDER_SPECS=<dir> cargo test --test contract extract::\n\
         {yaml}",
        extract.source
    ))
}

fn read_yaml(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| format!("{} is not YAML: {e}", path.display()))
}

/// A document as named parts: each top-level field, each path, each component.
fn parts(document: &Value) -> BTreeMap<String, &Value> {
    let mut parts = BTreeMap::new();
    let name = |key: &Value| key.as_str().unwrap_or("?").to_owned();
    for (key, value) in document.as_mapping().into_iter().flatten() {
        match (key.as_str(), value) {
            (Some("paths"), Value::Mapping(paths)) => {
                parts.extend(paths.iter().map(|(path, item)| (format!("path {}", name(path)), item)));
            }
            (Some("components"), Value::Mapping(kinds)) => {
                for (kind, of_kind) in kinds {
                    for (component, value) in of_kind.as_mapping().into_iter().flatten() {
                        parts.insert(format!("component {}/{}", name(kind), name(component)), value);
                    }
                }
            }
            _ => {
                parts.insert(format!("field {}", name(key)), value);
            }
        }
    }
    parts
}

/// What differs between the committed extract and the one made now, one line per part.
fn differences(committed: &Value, expected: &Value) -> Vec<String> {
    let (committed, expected) = (parts(committed), parts(expected));
    let mut lines = Vec::new();
    for (part, value) in &expected {
        match committed.get(part) {
            None => lines.push(format!("{part}: missing from the committed extract")),
            Some(have) if have != value => lines.push(format!("{part}: differs")),
            Some(_) => {}
        }
    }
    lines.extend(committed.keys().filter(|part| !expected.contains_key(*part)).map(|part| format!("{part}: in the committed extract only")));
    lines
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Says on stderr, past the test harness's capture, what a test checked or why it did not.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The committed extracts are exactly what `extract_of` makes of the full documents, whenever
/// those are here; with `SWITCHBOARD_WRITE_EXTRACTS=1` it writes them instead (how they are made).
#[test]
fn committed_extracts_match_the_full_documents() {
    const TEST: &str = "contract test extract::committed_extracts_match_the_full_documents";
    let repo = repo_root();
    let write = std::env::var("SWITCHBOARD_WRITE_EXTRACTS").is_ok_and(|value| value == "1");
    let Some(dir) = full_documents(&repo).unwrap_or_else(|e| panic!("{e}")) else {
        assert!(!write, "SWITCHBOARD_WRITE_EXTRACTS=1 needs the full documents: set SWITCHBOARD_PROVIDER_SPECS");
        say(&format!(
            "{TEST}: not checked: the full provider documents are not here (SWITCHBOARD_PROVIDER_SPECS is unset and {} does not exist); the committed extracts in tests/contract/extracts/ are used as they are",
            repo.join("../shared/provider-specs").display()
        ));
        return;
    };
    for extract in EXTRACTS {
        let full_path = dir.join(extract.document);
        let full = read_yaml(&full_path).unwrap_or_else(|e| panic!("{e}"));
        let expected = extract_of(&full, extract.operations).unwrap_or_else(|e| panic!("{}: {e}", full_path.display()));
        let path = committed_path(&repo, extract);
        if write {
            let text = render(extract, &expected).unwrap_or_else(|e| panic!("{e}"));
            std::fs::create_dir_all(path.parent().expect("a directory")).unwrap_or_else(|e| panic!("create the directory of {}: {e}", path.display()));
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            say(&format!("{TEST}: wrote {} from {}", path.display(), full_path.display()));
            continue;
        }
        let committed = read_yaml(&path).unwrap_or_else(|e| panic!("{e}"));
        let differences = differences(&committed, &expected);
        assert!(
            differences.is_empty(),
            "{} is not the extract of {}:\n  {}\nregenerate it: SWITCHBOARD_WRITE_EXTRACTS=1 SWITCHBOARD_PROVIDER_SPECS={} cargo test --test contract extract::",
            path.display(),
            full_path.display(),
            differences.join("\n  "),
            dir.display()
        );
        let count = |kind: &str| parts(&expected).keys().filter(|part| part.starts_with(kind)).count();
        say(&format!(
            "{TEST}: {} is the extract of {} ({} paths, {} components)",
            path.display(),
            full_path.display(),
            count("path "),
            count("component ")
        ));
    }
}

/// Without the full documents: each committed extract holds every listed operation, every
/// reference in it resolves inside it, and it holds nothing else and no documentation (the
/// extract of an extract is itself).
#[test]
fn committed_extracts_stand_alone() {
    let repo = repo_root();
    for extract in EXTRACTS {
        let path = committed_path(&repo, extract);
        let committed = read_yaml(&path).unwrap_or_else(|e| panic!("{e}"));
        let again = extract_of(&committed, extract.operations).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let differences = differences(&committed, &again);
        assert!(differences.is_empty(), "{} is not closed:\n  {}", path.display(), differences.join("\n  "));
    }
}

const SAMPLE: &str = r##"
openapi: 3.0.0
info: {title: Sample, version: "1", description: About the sample.}
servers: [{url: "https://api.example.com", description: production}]
security: [{Bearer: []}]
tags: [{name: pets}]
externalDocs: {url: "https://example.com/docs"}
x-generator: tool
paths:
  /pets/{id}:
    summary: One pet.
    parameters: [{name: id, in: path, required: true, schema: {type: string}, description: The pet.}]
    get:
      tags: [pets]
      operationId: getPet
      description: Gets a pet.
      externalDocs: {url: "https://example.com/docs/get"}
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Pet"}
              example: {kind: cat}
              examples: {one: {summary: A cat., value: {$ref: "#/components/schemas/Unused"}}}
        "404": {$ref: "#/components/responses/NotFound"}
    delete:
      operationId: deletePet
      responses: {"204": {description: Deleted, content: {application/json: {schema: {$ref: "#/components/schemas/Unused"}}}}}
  /unused:
    get: {responses: {"200": {description: OK, content: {application/json: {schema: {$ref: "#/components/schemas/Unused"}}}}}}
components:
  securitySchemes: {Bearer: {type: http, scheme: bearer, description: Token.}}
  responses:
    NotFound: {description: Not found., content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}}
  schemas:
    Pet:
      type: object
      description: A pet.
      required: [kind, title]
      properties:
        kind: {type: string, example: cat}
        description: {type: string, description: What its owner says.}
        title: {type: string, default: {description: a literal}}
      discriminator:
        propertyName: kind
        mapping: {cat: "#/components/schemas/Cat", dog: Dog}
    Cat: {allOf: [{$ref: "#/components/schemas/Pet"}, {$ref: "#/components/schemas/Name"}]}
    Dog: {type: object, x-enum-varnames: [A]}
    Name: {type: string, enum: [a, b], example: a}
    Error: {type: object, properties: {message: {type: string}}}
    Unused: {type: string}
"##;

#[test]
fn extract_keeps_listed_operations_and_what_they_reach_without_documentation() {
    let full: Value = serde_yaml::from_str(SAMPLE).unwrap();
    let expected: Value = serde_yaml::from_str(
        r##"
openapi: 3.0.0
info: {title: Sample, version: "1"}
servers: [{url: "https://api.example.com"}]
security: [{Bearer: []}]
paths:
  /pets/{id}:
    parameters: [{name: id, in: path, required: true, schema: {type: string}}]
    get:
      operationId: getPet
      responses:
        "200":
          description: ""
          content: {application/json: {schema: {$ref: "#/components/schemas/Pet"}}}
        "404": {$ref: "#/components/responses/NotFound"}
components:
  securitySchemes: {Bearer: {type: http, scheme: bearer}}
  responses:
    NotFound: {description: "", content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}}
  schemas:
    Pet:
      type: object
      required: [kind, title]
      properties:
        kind: {type: string}
        description: {type: string}
        title: {type: string, default: {description: a literal}}
      discriminator:
        propertyName: kind
        mapping: {cat: "#/components/schemas/Cat", dog: Dog}
    Cat: {allOf: [{$ref: "#/components/schemas/Pet"}, {$ref: "#/components/schemas/Name"}]}
    Dog: {type: object}
    Name: {type: string, enum: [a, b]}
    Error: {type: object, properties: {message: {type: string}}}
"##,
    )
    .unwrap();
    let extract = extract_of(&full, &[("get", "/pets/{id}")]).unwrap();
    assert_eq!(differences(&extract, &expected), Vec::<String>::new());
    assert_eq!(extract, expected);
    // The order of the document, not of the list.
    let paths: Vec<_> = extract.get("paths").unwrap().as_mapping().unwrap().keys().collect();
    assert_eq!(paths, ["/pets/{id}"]);
    let schemas: Vec<_> = extract["components"]["schemas"].as_mapping().unwrap().keys().filter_map(Value::as_str).collect();
    assert_eq!(schemas, ["Pet", "Cat", "Dog", "Name", "Error"]);
    // The extract of the extract is itself; written and read back, it is the same document.
    assert_eq!(extract_of(&extract, &[("get", "/pets/{id}")]).unwrap(), extract);
    let text = render(&EXTRACTS[0], &extract).unwrap();
    assert!(text.starts_with("# Extract of LINE's OpenAPI document"), "{text}");
    assert_eq!(serde_yaml::from_str::<Value>(&text).unwrap(), extract);
}

#[test]
fn extract_names_what_it_cannot_find() {
    let full: Value = serde_yaml::from_str(SAMPLE).unwrap();
    assert_eq!(extract_of(&full, &[("get", "/cats")]).unwrap_err(), "the document has no path /cats");
    assert_eq!(extract_of(&full, &[("put", "/pets/{id}")]).unwrap_err(), "the document has no operation PUT /pets/{id}");
    let dangling = SAMPLE.replace("{$ref: \"#/components/schemas/Error\"}", "{$ref: \"#/components/schemas/Gone\"}");
    let dangling: Value = serde_yaml::from_str(&dangling).unwrap();
    assert_eq!(
        extract_of(&dangling, &[("get", "/pets/{id}")]).unwrap_err(),
        "#/components/schemas/Gone is referred to but not in the document"
    );
    let external = SAMPLE.replace("\"#/components/schemas/Error\"", "\"errors.yml#/Error\"");
    let external: Value = serde_yaml::from_str(&external).unwrap();
    assert_eq!(
        extract_of(&external, &[("get", "/pets/{id}")]).unwrap_err(),
        "reference \"errors.yml#/Error\" is not to a component of the same document"
    );
    assert_eq!(extract_of(&Value::from("text"), &[]).unwrap_err(), "the document is not a YAML mapping");
}

#[test]
fn differences_name_the_parts() {
    let full: Value = serde_yaml::from_str(SAMPLE).unwrap();
    let one = extract_of(&full, &[("get", "/pets/{id}")]).unwrap();
    let two = extract_of(&full, &[("get", "/pets/{id}"), ("get", "/unused")]).unwrap();
    assert_eq!(differences(&one, &two), ["component schemas/Unused: missing from the committed extract", "path /unused: missing from the committed extract"]);
    assert_eq!(differences(&two, &one), ["component schemas/Unused: in the committed extract only", "path /unused: in the committed extract only"]);
    let mut changed = one.clone();
    changed["info"]["version"] = "2".into();
    assert_eq!(differences(&changed, &one), ["field info: differs"]);
}
