//! The receivers of desk events — each workstream's desk and bot, named `target:workstream` as
//! [`super::queue::QueuedEvent::endpoint`] does — and the settings a receiver that answered
//! 410 Gone is stopped under. Delivery to it resumes when they change: a new URL or signing key,
//! or a new `switchboard.dev/reconcile-requested-at` on the Workstream.

use sha2::{Digest, Sha256};

use crate::config::WorkstreamConfig;

/// The receiver's target (`desk` or `bot`) and workstream.
pub fn parse(endpoint: &str) -> Option<(&str, &str)> {
    endpoint.split_once(':')
}

/// A digest of the settings the receiver `target` of `ws` is delivered to under; None when the
/// workstream has no such receiver (a bot removed: its events go to the desk).
pub fn settings(ws: &WorkstreamConfig, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = match target {
        "bot" => {
            let bot = ws.bot.as_ref()?;
            vec!["bot", &bot.url, bot.token.as_ref().map_or("", |t| t.env.as_str())]
        }
        _ => {
            let d = &ws.delivery;
            vec!["desk", &d.url, &d.signing_secret.env, d.previous_signing_secret.as_ref().map_or("", |s| s.env.as_str())]
        }
    };
    parts.push(ws.reconcile_requested_at.as_deref().unwrap_or(""));
    let digest = Sha256::digest(parts.join("\n").as_bytes());
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether a receiver stopped under `stopped_under` is delivered to again: the workstream is
/// configured and the receiver's settings are no longer those.
pub fn resumes(ws: Option<&WorkstreamConfig>, target: &str, stopped_under: &str) -> bool {
    ws.is_some_and(|ws| settings(ws, target).as_deref() != Some(stopped_under))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BotConfig, SecretEnvRef};
    use crate::gateway::runtime::sample_workstream;

    fn workstream() -> WorkstreamConfig {
        let mut ws = sample_workstream(serde_json::json!({})).config;
        ws.bot = Some(BotConfig { url: "https://bot.example.com".into(), token: None });
        ws
    }

    #[test]
    fn a_stopped_receiver_resumes_when_its_settings_or_the_reconcile_request_change() {
        let ws = workstream();
        let desk = settings(&ws, "desk").unwrap();
        let bot = settings(&ws, "bot").unwrap();
        assert_ne!(desk, bot);
        assert!(!resumes(Some(&ws), "desk", &desk), "the same settings");
        let mut changed = ws.clone();
        changed.delivery.url = "https://desk.example.com/v2".into();
        assert!(resumes(Some(&changed), "desk", &desk), "a new URL");
        assert!(!resumes(Some(&changed), "bot", &bot), "the bot's settings did not change");
        let mut rotated = ws.clone();
        rotated.delivery.previous_signing_secret = Some(SecretEnvRef { env: "S3".into() });
        assert!(resumes(Some(&rotated), "desk", &desk), "a signing key added");
        let mut requested = ws.clone();
        requested.reconcile_requested_at = Some("2026-12-04T10:00:00Z".into());
        assert!(resumes(Some(&requested), "desk", &desk) && resumes(Some(&requested), "bot", &bot), "the annotation resumes both");
        let mut unchanged = ws.clone();
        unchanged.language = "ja".into();
        assert!(!resumes(Some(&unchanged), "desk", &desk), "other settings do not resume");
        let mut no_bot = ws.clone();
        no_bot.bot = None;
        assert!(resumes(Some(&no_bot), "bot", &bot), "a removed bot's events go to the desk");
        assert!(!resumes(None, "desk", &desk), "a workstream no longer configured stays stopped");
        assert_eq!(parse("bot:support"), Some(("bot", "support")));
    }
}
