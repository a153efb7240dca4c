//! The shipped examples: `examples/` passes `switchboard check`, and each manifest in
//! `examples/bad/` fails with exactly the problems recorded beside it in `NAME.expected`.
//!
//! To re-record an expected file after a deliberate change of a message:
//! `./target/debug/switchboard check examples/bad/NAME.yaml > examples/bad/NAME.expected`

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("check")
        .args(args)
        .current_dir(root())
        .output()
        .expect("switchboard runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Files of `examples/bad/` with the given extension, as paths relative to the crate root,
/// sorted by file name.
fn bad_files(extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples/bad"))
        .expect("examples/bad exists")
        .map(|e| e.expect("a readable entry").path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(extension))
        .map(|p| Path::new("examples/bad").join(p.file_name().expect("a file name")))
        .collect();
    files.sort();
    files
}

fn expected_for(manifest: &Path) -> String {
    let path = root().join(manifest.with_extension("expected"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn good_examples_pass() {
    let out = check(&["examples/"]);
    assert_eq!(stdout(&out), "", "check examples/ reported problems; stderr: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
}

#[test]
fn the_local_quick_start_passes_with_http_on_loopback() {
    let output = check(&["--allow-http-loopback", "examples/local"]);
    assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
    let strict = check(&["examples/local"]);
    assert!(stdout(&strict).contains("spec.webhook.publicBaseUrl: must use https"), "without the flag the loopback URLs are refused: {}", stdout(&strict));
}

#[test]
fn every_bad_example_has_an_expected_output_and_vice_versa() {
    let manifests = bad_files("yaml");
    let expected = bad_files("expected");
    assert!(manifests.len() >= 10, "only {} bad examples", manifests.len());
    let stems = |files: &[PathBuf]| files.iter().map(|f| f.with_extension("")).collect::<Vec<_>>();
    assert_eq!(stems(&manifests), stems(&expected), "each examples/bad/NAME.yaml needs exactly one NAME.expected");
}

#[test]
fn each_bad_example_reports_its_expected_problems() {
    let mut failures = Vec::new();
    for manifest in bad_files("yaml") {
        let name = manifest.to_str().expect("a UTF-8 path");
        let out = check(&[name]);
        let got = stdout(&out);
        let want = expected_for(&manifest);
        if out.status.code() != Some(1) {
            failures.push(format!("{name}: exit code {:?}, expected 1; stderr: {}", out.status.code(), stderr(&out)));
        }
        if want.is_empty() {
            failures.push(format!("{name}: the expected output is empty; a bad example must report something"));
        }
        if got != want {
            failures.push(format!("{name}: output differs\n--- expected\n{want}--- got\n{got}---"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_bad_folder_as_one_set_reports_the_union() {
    // Every bad example lives in its own namespace, so checking them together adds no
    // cross-file problems.
    let want: String = bad_files("yaml").iter().map(|m| expected_for(m)).collect();
    let out = check(&["examples/bad/"]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let got = stdout(&out);
    assert!(got == want, "check examples/bad/ differs\n--- expected\n{want}--- got\n{got}---");
}

#[test]
fn json_output_lists_the_same_problems() {
    let file = "examples/bad/template-mistakes.yaml";
    let lines = stdout(&check(&[file])).lines().count();
    assert!(lines > 1, "{file} should report several problems");
    let out = check(&["--output", "json", file]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the JSON output parses");
    let problems = report["problems"].as_array().expect("a problems array");
    assert_eq!(problems.len(), lines, "{report:#}");
    for p in problems {
        assert_eq!(p["file"], file, "{p}");
        assert!(p["document"].as_u64().is_some_and(|d| d >= 1), "{p}");
        for key in ["kind", "namespace", "name", "field", "message"] {
            assert!(p[key].as_str().is_some_and(|s| !s.is_empty()), "{key} missing or empty in {p}");
        }
        assert_eq!(p["namespace"], "bad-templates", "{p}");
    }
}

#[test]
fn a_missing_path_exits_2_and_names_it() {
    let path = "examples/no-such-folder";
    let out = check(&[path]);
    assert_eq!(out.status.code(), Some(2), "stdout: {}", stdout(&out));
    assert!(stderr(&out).contains(path), "stderr does not name {path}: {}", stderr(&out));
}

#[test]
fn a_yaml_syntax_error_is_reported_on_its_document() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, "apiVersion: switchboard.dev/v1alpha1\nkind: Workstream\nmetadata: {name: [unclosed\n").expect("write");
    let out = check(&[file.to_str().expect("a UTF-8 path")]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let got = stdout(&out);
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 1, "{got}");
    assert!(lines[0].starts_with(&format!("{}#1: ", file.display())), "{got}");
    assert!(lines[0].contains("not valid YAML"), "{got}");
}

#[test]
fn metadata_that_does_not_parse_is_reported_not_dropped() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("labels.yaml");
    std::fs::write(
        &file,
        "apiVersion: switchboard.dev/v1alpha1\nkind: MessageTemplate\nmetadata: {name: t, namespace: x, labels: {tier: 1}}\n\
         spec: {accountRef: {name: a}, templateName: hello, category: Utility, defaultLanguage: en, localizations: [{language: en, body: Hi}]}\n",
    )
    .expect("write");
    let out = check(&["--allow-external-refs", file.to_str().expect("a UTF-8 path")]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let got = stdout(&out);
    assert_eq!(got.lines().count(), 1, "{got}");
    assert!(got.contains("MessageTemplate x/t: metadata: is not valid object metadata"), "{got}");
}
