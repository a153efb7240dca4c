//! The workstream's attachment policy (`fileAttachments`): who may send attachments, how large
//! and of which file types. Pure: the agent API and the processor ask, and act on the answer.

use crate::api::workstream::FileAttachments;
use crate::gateway::model::event::{Attachment, RejectedAttachment};
use crate::gateway::model::file::extension;

/// Why an attachment may not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The workstream does not let this side send attachments.
    NotAllowed,
    /// Larger than `maxBytes`.
    TooLarge {
        /// The limit in bytes.
        max_bytes: u64,
    },
    /// Its extension is in `blockedExtensions`.
    BlockedExtension {
        /// The extension as the policy lists it, e.g. `.exe`.
        extension: String,
    },
}

impl Refusal {
    /// The error code the agent API and desk events use.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotAllowed => "attachments_not_allowed",
            Refusal::TooLarge { .. } => "attachment_too_large",
            Refusal::BlockedExtension { .. } => "blocked_extension",
        }
    }
}

/// The policy's limit in bytes.
pub fn max_bytes(policy: &FileAttachments) -> u64 {
    u64::try_from(policy.max_bytes).unwrap_or(0)
}

/// Whether an agent may send a file with this name, URL and size (when known).
pub fn check_agent(policy: &FileAttachments, file_name: Option<&str>, url: Option<&str>, size: Option<u64>) -> Result<(), Refusal> {
    if !policy.agents_can_send {
        return Err(Refusal::NotAllowed);
    }
    check_file(policy, file_name, url, size)
}

fn check_file(policy: &FileAttachments, file_name: Option<&str>, url: Option<&str>, size: Option<u64>) -> Result<(), Refusal> {
    if let Some(size) = size
        && size > max_bytes(policy)
    {
        return Err(Refusal::TooLarge { max_bytes: max_bytes(policy) });
    }
    if let Some(ext) = extension(file_name, url)
        && let Some(blocked) = policy.blocked_extensions.iter().find(|b| b.eq_ignore_ascii_case(&ext))
    {
        return Err(Refusal::BlockedExtension { extension: blocked.clone() });
    }
    Ok(())
}

/// Splits a customer's attachments into those passed on and those the policy keeps back.
pub fn screen_customer(policy: &FileAttachments, attachments: Vec<Attachment>) -> (Vec<Attachment>, Vec<RejectedAttachment>) {
    let mut passed = Vec::new();
    let mut rejected = Vec::new();
    for a in attachments {
        let verdict = if policy.customers_can_send { check_file(policy, a.file_name.as_deref(), a.url.as_deref(), a.size) } else { Err(Refusal::NotAllowed) };
        match verdict {
            Ok(()) => passed.push(a),
            Err(refusal) => rejected.push(RejectedAttachment { content_type: a.content_type, file_name: a.file_name, reason: refusal.code().to_owned() }),
        }
    }
    (passed, rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(agents: bool, customers: bool) -> FileAttachments {
        FileAttachments { customers_can_send: customers, agents_can_send: agents, max_bytes: 1000, blocked_extensions: vec![".exe".into(), ".BAT".into()] }
    }

    #[test]
    fn agents_are_checked_for_permission_size_and_type() {
        assert_eq!(check_agent(&policy(false, true), Some("a.png"), None, Some(1)), Err(Refusal::NotAllowed));
        assert_eq!(check_agent(&policy(true, true), Some("a.png"), None, Some(1001)), Err(Refusal::TooLarge { max_bytes: 1000 }));
        assert_eq!(check_agent(&policy(true, true), Some("a.png"), None, Some(1000)), Ok(()));
        assert_eq!(
            check_agent(&policy(true, true), None, Some("https://x/run.bat"), None),
            Err(Refusal::BlockedExtension { extension: ".BAT".into() }),
            "extensions compare without case"
        );
    }

    #[test]
    fn customers_attachments_are_screened_one_by_one() {
        let a = |name: &str, size| Attachment { file_name: Some(name.into()), size: Some(size), ..Attachment::default() };
        let (passed, rejected) = screen_customer(&policy(true, true), vec![a("ok.png", 10), a("big.png", 5000), a("x.exe", 1)]);
        assert_eq!(passed, vec![a("ok.png", 10)]);
        assert_eq!(rejected.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>(), ["attachment_too_large", "blocked_extension"]);
        let (passed, rejected) = screen_customer(&policy(true, false), vec![a("ok.png", 10)]);
        assert!(passed.is_empty());
        assert_eq!(rejected[0].reason, "attachments_not_allowed");
    }
}
