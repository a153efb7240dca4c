//! The README's quick start, steps 2 and 3, run as written (the same manifests, flags and
//! commands) against the test cluster: a LINE and a WhatsApp customer message reach the desk
//! through gateways started by `switchboard run-gateway`, and the agents' replies reach the
//! simulated customers. Only the log folder is this test's own.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster;

/// The first `sh` block after the paragraph that starts with `marker`.
fn block_after(readme: &str, marker: &str) -> String {
    let from = readme.find(marker).unwrap_or_else(|| panic!("the README has {marker:?}"));
    let rest = &readme[from..];
    let start = rest.find("```sh\n").expect("a shell block follows") + "```sh\n".len();
    rest[start..start + rest[start..].find("```").unwrap()].to_owned()
}

/// Kills the script and everything it left running in the background (its process group).
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created.
        unsafe {
            libc::kill(-self.0, libc::SIGTERM);
        }
        std::thread::sleep(Duration::from_secs(2));
        unsafe {
            libc::kill(-self.0, libc::SIGKILL);
        }
    }
}

/// Every log the quick start wrote, each as (file, text).
fn logs(dir: &std::path::Path) -> Vec<(String, String)> {
    let files = std::fs::read_dir(dir).into_iter().flatten().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "log"));
    files.map(|e| (e.path().display().to_string(), std::fs::read_to_string(e.path()).unwrap_or_default())).collect()
}

/// The last lines of each log, for a failure report.
fn tails(dir: &std::path::Path) -> String {
    logs(dir)
        .into_iter()
        .map(|(file, text)| {
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            format!("--- {file}\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
        })
        .collect()
}

#[tokio::test]
async fn the_readme_quick_start_runs_as_written() {
    let Some(_client) = cluster::client("quickstart").await else { return };
    if Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        panic!("the quick start needs kubectl on PATH (Debian: apt-get install kubernetes-client)");
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let logs_dir = dir.path().to_str().unwrap().to_owned();
    let script = format!(
        "set -euo pipefail\n{}\n{}\nkubectl delete -f examples/local/accounts.yaml -f examples/local/workstreams.yaml --wait --timeout=60s\n",
        block_after(&readme, "**2. Switchboard against the simulator.**"),
        block_after(&readme, "**3. A customer writes, an agent answers.**"),
    )
    .replace("/tmp/sb-quickstart", &logs_dir);
    let binary_dir = std::path::Path::new(env!("CARGO_BIN_EXE_switchboard")).parent().unwrap().to_owned();
    let path = format!("{}:{}", binary_dir.display(), std::env::var("PATH").unwrap_or_default());
    let started = Instant::now();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(root)
        .env("PATH", path)
        .env("KUBECONFIG", std::env::var("SWITCHBOARD_TEST_KUBECONFIG").unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("bash runs");
    let group = Group(i32::try_from(child.id()).unwrap());
    let limit = Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let output = if status.is_some() { child.wait_with_output().ok() } else { None };
    let printed = output.map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))).unwrap_or_default();
    let report = format!("script output:\n{printed}\nlogs:\n{}", tails(dir.path()));
    assert!(status.is_some_and(|s| s.success()), "the quick start did not run through in {limit:?}: {status:?}\n{report}");
    println!("quick start steps 2 and 3 took {:.1} s", started.elapsed().as_secs_f64());

    let desk = std::fs::read_to_string(dir.path().join("desk.log")).unwrap();
    for expected in ["line conversation.created", "line message.received", "whatsapp message.received", "line message.accepted"] {
        assert!(desk.contains(expected), "the desk saw {expected}:\n{desk}");
    }
    assert!(!desk.contains("bad signature"), "every delivery verifies:\n{desk}");
    // The demo credentials are public, but the code must treat them as it treats real ones.
    for (file, text) in logs(dir.path()).into_iter().chain([("the script's output".to_owned(), printed)]) {
        for secret in ["demo-line-channel-secret", "demo-line-access-token", "demo-twilio-auth-token", "demo-desk-signing-secret", "demo-desk-api-token"] {
            assert!(!text.contains(secret), "{secret} appears in {file}");
        }
    }
    drop(group);
}
