//! The Argo CD health checks in `deploy/argocd/` run in a real Lua interpreter against sample
//! objects shaped like the ones the controller writes, and `argocd-cm-patch.yaml` carries
//! exactly the checks' text.
//!
//! Argo CD runs health checks in gopher-lua (Lua 5.1). Every Debian interpreter found among
//! `lua5.1`, `lua5.3` and `lua5.4` runs every case; at least one must be there (`.ci/run`
//! installs `lua5.4`). Lua has no JSON decoder, so each object goes in as a table literal.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

const KINDS: [&str; 4] = ["MessagingAccount", "Workstream", "RoutingRule", "MessageTemplate"];

/// The line after which the four checks are the same.
fn argocd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/argocd")
}

/// A kind's check as Argo CD gets it: its terminal reasons, then the logic all four share.
fn script(kind: &str) -> String {
    let read = |name: String| {
        let path = argocd_dir().join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    read(format!("{kind}.lua")) + &read("health.lua".to_owned())
}

/// The Lua interpreters on PATH; fails the test when there is none.
fn interpreters() -> &'static [String] {
    static FOUND: OnceLock<Vec<String>> = OnceLock::new();
    FOUND.get_or_init(|| {
        let works = |name: &str| {
            Command::new(name).args(["-e", "io.write('ok')"]).output().is_ok_and(|o| o.status.success() && o.stdout == b"ok")
        };
        let mut found: Vec<String> = ["lua5.1", "lua5.3", "lua5.4"].into_iter().filter(|n| works(n)).map(String::from).collect();
        if found.is_empty() && works("lua") {
            found.push("lua".to_owned());
        }
        assert!(
            !found.is_empty(),
            "no Lua interpreter on PATH (looked for lua5.1, lua5.3, lua5.4 and lua): these tests run the \
             Argo CD health checks in a real one. Install Debian's: `apt-get install lua5.4` \
             (.ci/run does so before tests/run.sh)"
        );
        found
    })
}

/// A Lua string literal holding exactly `s`'s bytes.
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            // Three digits always, so that a digit after it cannot extend the escape.
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\{:03}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `value` as a Lua table constructor, as Argo CD hands objects to the checks: null members are
/// absent, arrays are sequences from 1.
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => format!("{{{}}}", items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")),
        Value::Object(members) => format!(
            "{{{}}}",
            members
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs `kind`'s check on `object` in `lua`: (hs.status, hs.message). The check runs as Argo
/// CD runs it: `obj` global, no io, os or require, its chunk's `return hs` the result.
fn assess(lua: &str, kind: &str, object: &Value) -> (String, String) {
    let program = format!(
        "local write = io.write\nio, os, require, dofile, loadfile = nil, nil, nil, nil, nil\n\
         obj = {}\nlocal hs = (function()\n{}\nend)()\n\
         write(tostring(hs.status), \"\\0\", tostring(hs.message))\n",
        lua_literal(object),
        script(kind)
    );
    let mut child = Command::new(lua)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {lua}: {e}"));
    child.stdin.take().unwrap().write_all(program.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{lua} failed on {kind}.lua: {}\nobject: {object}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\0').unwrap_or_else(|| panic!("{lua}: unexpected output {text:?}"));
    (status.to_owned(), message.to_owned())
}

fn cond(type_: &str, status: &str, reason: &str, message: &str, generation: i64) -> Value {
    json!({
        "type": type_, "status": status, "reason": reason, "message": message,
        "observedGeneration": generation, "lastTransitionTime": "2026-11-20T10:00:00Z",
    })
}

/// An object of `kind` at generation 3 with `status` (None: no status at all).
fn object(kind: &str, status: Option<Value>) -> Value {
    let mut object = json!({
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "sample", "namespace": "support", "generation": 3, "uid": "0b5c6a2e"},
        "spec": {},
    });
    if let Some(status) = status {
        object["status"] = status;
    }
    object
}

/// A status of generation 3 with these conditions.
fn with(conditions: Vec<Value>) -> Option<Value> {
    Some(json!({"observedGeneration": 3, "conditions": conditions}))
}

/// One sample: what it shows, the object, the health and a piece of the message expected.
struct Case {
    name: &'static str,
    object: Value,
    health: &'static str,
    message: &'static str,
}

fn case(name: &'static str, kind: &str, status: Option<Value>, health: &'static str, message: &'static str) -> Case {
    Case { name, object: object(kind, status), health, message }
}

fn check(kind: &str, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for lua in interpreters() {
        for case in &cases {
            let (health, message) = assess(lua, kind, &case.object);
            if health != case.health || !message.contains(case.message) {
                failures.push(format!(
                    "{lua} {kind} {}: got {health} {message:?}, want {} with {:?}",
                    case.name, case.health, case.message
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len() * interpreters().len(), failures.join("\n"));
}

/// What every kind does alike: the Ready condition and the generations.
fn common(kind: &str) -> Vec<Case> {
    let ready = |generation| cond("Ready", "True", "Ready", "all good", generation);
    vec![
        case("no status", kind, None, "Progressing", "Waiting for the controller"),
        case("empty status", kind, Some(json!({})), "Progressing", "Ready condition"),
        case("conditions without Ready", kind, with(vec![cond("Other", "True", "Fine", "m", 3)]), "Progressing", "Ready condition"),
        case("Ready True, current", kind, with(vec![ready(3)]), "Healthy", "all good"),
        case(
            "Ready True, status.observedGeneration behind",
            kind,
            Some(json!({"observedGeneration": 2, "conditions": [ready(3)]})),
            "Progressing",
            "observe generation 3 (the status describes generation 2)",
        ),
        case("Ready True, condition behind", kind, with(vec![ready(2)]), "Progressing", "observe generation 3"),
        case(
            "Ready True, no generation figures (kstatus leniency)",
            kind,
            Some(json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "ok"}]})),
            "Healthy",
            "ok",
        ),
        case(
            "InvalidSpec",
            kind,
            with(vec![cond("Ready", "False", "InvalidSpec", "spec.x: must be set", 3)]),
            "Degraded",
            "InvalidSpec: spec.x: must be set",
        ),
        case(
            "InvalidSpec of an older generation (the fix is not seen yet)",
            kind,
            Some(json!({"observedGeneration": 2, "conditions": [cond("Ready", "False", "InvalidSpec", "m", 2)]})),
            "Progressing",
            "observe generation 3",
        ),
        case("Ready Unknown", kind, with(vec![cond("Ready", "Unknown", "Progressing", "working", 3)]), "Progressing", "Progressing: working"),
        case(
            "Ready False, a reason this check does not know",
            kind,
            with(vec![cond("Ready", "False", "SomethingNew", "m", 3)]),
            "Progressing",
            "SomethingNew",
        ),
        case("Ready False, transient", kind, with(vec![cond("Ready", "False", "RateLimited", "slow down", 3)]), "Progressing", "RateLimited"),
    ]
}

fn account(credentials: Value, webhook: Value, gateway: Option<Value>, ready: Value) -> Option<Value> {
    let mut conditions = vec![credentials, webhook];
    conditions.extend(gateway);
    conditions.push(ready);
    with(conditions)
}

#[test]
fn messaging_account() {
    let kind = "MessagingAccount";
    let valid = || cond("CredentialsValid", "True", "Valid", "LINE accepted the channel access token", 3);
    let registered = || cond("WebhookRegistered", "True", "Registered", "LINE sends webhooks to https://x", 3);
    let available = || cond("GatewayReady", "True", "Available", "1 of 1 gateway replicas available", 3);
    let waiting = || cond("WebhookRegistered", "Unknown", "CredentialsNotValid", "waiting for valid credentials", 3);
    // Credentials refused: Ready repeats CredentialsValid's reason, as conditions::ready does.
    let credentials_failed = |reason: &str| {
        account(
            cond("CredentialsValid", "False", reason, "the provider said no", 3),
            waiting(),
            Some(available()),
            cond("Ready", "False", reason, "CredentialsValid: the provider said no", 3),
        )
    };
    let webhook_failed = |reason: &str| {
        account(
            valid(),
            cond("WebhookRegistered", "False", reason, "the webhook is not right", 3),
            Some(available()),
            cond("Ready", "False", reason, "WebhookRegistered: the webhook is not right", 3),
        )
    };
    let gateway_failed = |status: &str, reason: &str| {
        account(
            valid(),
            registered(),
            Some(cond("GatewayReady", status, reason, "the gateway is not right", 3)),
            cond("Ready", if status == "Unknown" { "Unknown" } else { "False" }, reason, "GatewayReady: the gateway is not right", 3),
        )
    };
    // Nothing checked: Ready False for the reason, the others Unknown with it (Outcome::blocked).
    let blocked = |reason: &str| {
        account(
            cond("CredentialsValid", "Unknown", reason, "not checked: see Ready", 3),
            cond("WebhookRegistered", "Unknown", reason, "not checked: see Ready", 3),
            None,
            cond("Ready", "False", reason, "cannot go on", 3),
        )
    };
    let manual = "Registration is Manual: in the LINE Developers console, set the webhook URL";
    let mut cases = common(kind);
    cases.extend([
        case(
            "all True",
            kind,
            account(valid(), registered(), Some(available()), cond("Ready", "True", "Ready", "CredentialsValid, WebhookRegistered, GatewayReady are True", 3)),
            "Healthy",
            "GatewayReady are True",
        ),
        case("Unauthorized", kind, credentials_failed("Unauthorized"), "Degraded", "Unauthorized: CredentialsValid: the provider said no"),
        case("SecretNotFound", kind, credentials_failed("SecretNotFound"), "Degraded", "SecretNotFound"),
        case("SecretKeyMissing", kind, credentials_failed("SecretKeyMissing"), "Degraded", "SecretKeyMissing"),
        case("AccountSuspended", kind, credentials_failed("AccountSuspended"), "Degraded", "AccountSuspended"),
        case("ProviderRejected (credentials)", kind, credentials_failed("ProviderRejected"), "Degraded", "ProviderRejected"),
        case("ProviderUnavailable", kind, credentials_failed("ProviderUnavailable"), "Progressing", "ProviderUnavailable"),
        case("RateLimited", kind, credentials_failed("RateLimited"), "Progressing", "RateLimited"),
        case("SecretUnreadable", kind, credentials_failed("SecretUnreadable"), "Progressing", "SecretUnreadable"),
        case("NumberNotFound", kind, webhook_failed("NumberNotFound"), "Degraded", "NumberNotFound"),
        case("NumberNotInService", kind, webhook_failed("NumberNotInService"), "Degraded", "NumberNotInService"),
        case("ChannelInUse", kind, webhook_failed("ChannelInUse"), "Degraded", "ChannelInUse"),
        case("WebhookInactive", kind, webhook_failed("WebhookInactive"), "Degraded", "WebhookInactive"),
        case("ProviderRejected (webhook)", kind, webhook_failed("ProviderRejected"), "Degraded", "ProviderRejected"),
        case("EndpointMismatch (retried)", kind, webhook_failed("EndpointMismatch"), "Progressing", "EndpointMismatch"),
        case("ProviderUnavailable (webhook)", kind, webhook_failed("ProviderUnavailable"), "Progressing", "ProviderUnavailable"),
        case("gateway rolling out", kind, gateway_failed("Unknown", "Progressing"), "Progressing", "GatewayReady: the gateway"),
        case("InvalidConfiguration", kind, gateway_failed("False", "InvalidConfiguration"), "Degraded", "InvalidConfiguration"),
        case("ProgressDeadlineExceeded", kind, gateway_failed("False", "ProgressDeadlineExceeded"), "Degraded", "ProgressDeadlineExceeded"),
        case("InvalidSpec (blocked)", kind, blocked("InvalidSpec"), "Degraded", "InvalidSpec: cannot go on"),
        case("RegionNotSupported", kind, blocked("RegionNotSupported"), "Degraded", "RegionNotSupported"),
        case(
            "ManualRegistrationRequired does not hold Ready back",
            kind,
            account(
                valid(),
                cond("WebhookRegistered", "False", "ManualRegistrationRequired", manual, 3),
                Some(available()),
                cond("Ready", "True", "Ready", "CredentialsValid, GatewayReady are True; the webhook URL must be registered by hand (see WebhookRegistered)", 3),
            ),
            "Healthy",
            "WebhookRegistered is False: ManualRegistrationRequired: Registration is Manual",
        ),
        case(
            "EmptyDir store is a note, not a failure",
            kind,
            with(vec![
                valid(),
                registered(),
                available(),
                cond("StoragePersistent", "False", "EmptyDir", "the store is on an emptyDir", 3),
                cond("Ready", "True", "Ready", "all True", 3),
            ]),
            "Healthy",
            "StoragePersistent is False: EmptyDir",
        ),
        case(
            "ScaledToZero",
            kind,
            account(valid(), registered(), Some(cond("GatewayReady", "False", "ScaledToZero", "the gateway is paused", 3)), cond("Ready", "False", "ScaledToZero", "GatewayReady: the gateway is paused", 3)),
            "Suspended",
            "GatewayReady is False: ScaledToZero: the gateway is paused",
        ),
        case(
            "a terminal condition beside a transient Ready",
            kind,
            account(
                cond("CredentialsValid", "False", "ProviderUnavailable", "LINE is down", 3),
                waiting(),
                Some(cond("GatewayReady", "False", "InvalidConfiguration", "over 1 MiB", 3)),
                cond("Ready", "False", "ProviderUnavailable", "CredentialsValid: LINE is down", 3),
            ),
            "Degraded",
            "GatewayReady is False: InvalidConfiguration: over 1 MiB",
        ),
        case(
            "a terminal condition of an older generation does not count",
            kind,
            account(
                valid(),
                registered(),
                Some(cond("GatewayReady", "False", "InvalidConfiguration", "over 1 MiB", 2)),
                cond("Ready", "Unknown", "Progressing", "GatewayReady has not been determined yet", 3),
            ),
            "Progressing",
            "not been determined",
        ),
    ]);
    check(kind, cases);
}

/// Workstream and RoutingRule: Accepted, then Ready (workstream::verdict).
fn accepted_then_ready(kind: &str) -> Vec<Case> {
    let accepted = || cond("Accepted", "True", "Accepted", "the spec is valid and its references resolve", 3);
    let refused = |reason: &str| {
        with(vec![cond("Accepted", "False", reason, "spec.x: refused", 3), cond("Ready", "False", reason, "spec.x: refused", 3)])
    };
    let mut cases = common(kind);
    cases.extend([
        case(
            "accepted and held by the gateway",
            kind,
            with(vec![accepted(), cond("Ready", "True", "Ready", "the gateway configuration holds generation 3", 3)]),
            "Healthy",
            "holds generation 3",
        ),
        case("InvalidSpec", kind, refused("InvalidSpec"), "Degraded", "InvalidSpec: spec.x: refused"),
        case("InvalidReference", kind, refused("InvalidReference"), "Degraded", "InvalidReference"),
        case(
            "account not Ready",
            kind,
            with(vec![accepted(), cond("Ready", "False", "AccountNotReady", "MessagingAccount a is not Ready (Unauthorized): m", 3)]),
            "Progressing",
            "AccountNotReady",
        ),
        case(
            "account not checked yet",
            kind,
            with(vec![accepted(), cond("Ready", "Unknown", "AccountNotReady", "the account has not been checked yet", 3)]),
            "Progressing",
            "AccountNotReady",
        ),
        case(
            "gateway configuration not there yet",
            kind,
            with(vec![accepted(), cond("Ready", "Unknown", "Progressing", "waiting for the gateway configuration to hold generation 3", 3)]),
            "Progressing",
            "waiting for the gateway configuration",
        ),
    ]);
    cases
}

#[test]
fn workstream() {
    check("Workstream", accepted_then_ready("Workstream"));
}

#[test]
fn routing_rule() {
    let kind = "RoutingRule";
    let mut cases = accepted_then_ready(kind);
    cases.push(case(
        "its workstream is refused",
        kind,
        with(vec![
            cond("Accepted", "True", "Accepted", "the spec is valid and its references resolve", 3),
            cond("Ready", "False", "WorkstreamNotAccepted", "Workstream w is not accepted: spec.accountRef.name: taken", 3),
        ]),
        "Degraded",
        "WorkstreamNotAccepted",
    ));
    check(kind, cases);
}

#[test]
fn message_template() {
    let kind = "MessageTemplate";
    let synced = || cond("Synced", "True", "Synced", "Twilio Content: en HX1", 3);
    let approval = |status: &str, reason: &str| {
        let ready = if status == "True" { "True" } else if status == "False" { "False" } else { "Unknown" };
        with(vec![
            synced(),
            cond("Approved", status, reason, "WhatsApp says so", 3),
            cond("Ready", ready, if ready == "True" { "Ready" } else { reason }, "Approved: WhatsApp says so", 3),
        ])
    };
    let not_synced = |reason: &str| {
        with(vec![cond("Synced", "False", reason, "Twilio: no", 3), cond("Ready", "False", reason, "Synced: Twilio: no", 3)])
    };
    let blocked = |reason: &str| {
        with(vec![
            cond("Synced", "Unknown", reason, "not checked: see Ready", 3),
            cond("Approved", "Unknown", reason, "not checked: see Ready", 3),
            cond("Ready", "False", reason, "spec.accountRef.name: MessagingAccount support/a not found", 3),
        ])
    };
    let mut cases = common(kind);
    cases.extend([
        case("approved", kind, approval("True", "Approved"), "Healthy", "WhatsApp says so"),
        case(
            "LINE: no approval needed",
            kind,
            with(vec![
                cond("Synced", "True", "NotRequired", "LINE needs no provider-side template", 3),
                cond("Approved", "True", "NotRequired", "LINE messages need no approval", 3),
                cond("Ready", "True", "Ready", "Synced, Approved are True", 3),
            ]),
            "Healthy",
            "Synced, Approved are True",
        ),
        case("under review", kind, approval("Unknown", "Pending"), "Progressing", "Pending"),
        case("Rejected", kind, approval("False", "Rejected"), "Degraded", "Rejected: Approved: WhatsApp says so"),
        case("Paused", kind, approval("False", "Paused"), "Degraded", "Paused"),
        case("Disabled", kind, approval("False", "Disabled"), "Degraded", "Disabled"),
        case("account without valid credentials", kind, not_synced("AccountNotReady"), "Progressing", "AccountNotReady"),
        case("ProviderUnavailable", kind, not_synced("ProviderUnavailable"), "Progressing", "ProviderUnavailable"),
        case("RateLimited", kind, not_synced("RateLimited"), "Progressing", "RateLimited"),
        case("SecretUnreadable", kind, not_synced("SecretUnreadable"), "Progressing", "SecretUnreadable"),
        case("Unauthorized", kind, not_synced("Unauthorized"), "Degraded", "Unauthorized"),
        case("SecretNotFound", kind, not_synced("SecretNotFound"), "Degraded", "SecretNotFound"),
        case("SecretKeyMissing", kind, not_synced("SecretKeyMissing"), "Degraded", "SecretKeyMissing"),
        case("ProviderRejected", kind, not_synced("ProviderRejected"), "Degraded", "ProviderRejected"),
        case("AccountNotFound", kind, blocked("AccountNotFound"), "Degraded", "AccountNotFound: spec.accountRef.name"),
        case(
            "a rejection stands while Twilio is unreachable",
            kind,
            with(vec![
                cond("Synced", "False", "ProviderUnavailable", "Twilio is down", 3),
                cond("Approved", "False", "Rejected", "WhatsApp rejected en: INVALID_FORMAT", 3),
                cond("Ready", "False", "ProviderUnavailable", "Synced: Twilio is down", 3),
            ]),
            "Degraded",
            "Approved is False: Rejected: WhatsApp rejected en",
        ),
    ]);
    check(kind, cases);
}

#[test]
fn odd_strings_reach_lua_intact() {
    // Quotes, backslashes, newlines, control characters and non-ASCII text in a message.
    let message = "a \"quoted\" \\path\\ on\ntwo lines\t\u{1}9 — İstanbul 東京";
    let object = object("Workstream", with(vec![cond("Ready", "True", "Ready", message, 3)]));
    for lua in interpreters() {
        assert_eq!(assess(lua, "Workstream", &object), ("Healthy".to_owned(), message.to_owned()), "{lua}");
    }
}

#[test]
fn the_argocd_cm_patch_carries_the_checks_verbatim() {
    let path = argocd_dir().join("argocd-cm-patch.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let patch: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!((patch["apiVersion"].as_str(), patch["kind"].as_str()), (Some("v1"), Some("ConfigMap")));
    assert_eq!((patch["metadata"]["name"].as_str(), patch["metadata"]["namespace"].as_str()), (Some("argocd-cm"), Some("argocd")));
    let data = patch["data"].as_object().expect("data");
    let expected: BTreeSet<String> = KINDS.iter().map(|k| format!("resource.customizations.health.switchboard.dev_{k}")).collect();
    assert_eq!(data.keys().cloned().collect::<BTreeSet<_>>(), expected, "{}: data keys", path.display());
    for kind in KINDS {
        let key = format!("resource.customizations.health.switchboard.dev_{kind}");
        assert!(
            data[&key].as_str() == Some(script(kind).as_str()),
            "{} does not carry deploy/argocd/{kind}.lua + health.lua verbatim; regenerate it with deploy/argocd/generate.sh",
            path.display()
        );
    }
}

#[test]
fn every_terminal_reason_is_in_the_troubleshooting_table() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("### Troubleshooting").expect("README.md has a \"### Troubleshooting\" section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut missing = Vec::new();
    for kind in KINDS {
        let text = script(kind);
        let table = &text[text.find("local terminal = {").expect("a terminal table")..];
        let table = &table[..table.find("\n}").unwrap()];
        for reason in table.lines().filter_map(|l| l.trim().split_once(" = true").map(|(r, _)| r)) {
            if !section.contains(&format!("`{reason}`")) {
                missing.push(format!("{kind}: {reason}"));
            }
        }
    }
    assert!(missing.is_empty(), "reasons the Argo CD checks treat as Degraded but the README's troubleshooting table does not explain: {missing:?}");
}
