//! Delivery receipts: what a provider reports about an outgoing message after it accepted it,
//! and how a message moves on when one arrives. Receipts come in any order and more than once;
//! a message still moves forward only, through every status on the way, so that the desk sees
//! each status once and in order.

use serde::{Deserialize, Serialize};

use super::outbound::{SendError, Status};

/// What a receipt reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reported {
    /// Passed on to the customer's messaging app.
    Sent,
    /// On the customer's device.
    Delivered,
    /// Read by the customer.
    Read,
    /// Not delivered, for good.
    Failed,
}

impl Reported {
    /// Its name, as the store keys receipts by it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reported::Sent => "sent",
            Reported::Delivered => "delivered",
            Reported::Read => "read",
            Reported::Failed => "failed",
        }
    }
}

/// A receipt for one message the provider accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// The provider's ID of the message (Twilio's `MessageSid`).
    pub provider_message_id: String,
    /// What happened to it.
    pub reported: Reported,
    /// Why it failed, with the provider's own code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SendError>,
}

/// How far along the way to the customer a status is; None for the statuses that are not on
/// it (not yet accepted, or ended).
fn progress(status: Status) -> Option<u8> {
    match status {
        Status::Accepted => Some(0),
        Status::Sent => Some(1),
        Status::Delivered => Some(2),
        Status::Read => Some(3),
        Status::Queued | Status::Failed | Status::Skipped => None,
    }
}

/// The statuses a message at `current` goes through when `reported` arrives, in order; empty
/// when the receipt tells nothing new. A message read was delivered and sent before, so a
/// receipt that overtook others fills in the ones it skipped; a repeat or an older status is
/// ignored. A failure ends a message that has not reached the customer's device; after that,
/// and after a failure, nothing moves it any more.
pub fn steps(current: Status, reported: Reported) -> Vec<Status> {
    let Some(at) = progress(current) else { return Vec::new() };
    let to = match reported {
        Reported::Failed => return if at < 2 { vec![Status::Failed] } else { Vec::new() },
        Reported::Sent => 1,
        Reported::Delivered => 2,
        Reported::Read => 3,
    };
    [Status::Sent, Status::Delivered, Status::Read].into_iter().filter(|s| progress(*s).is_some_and(|p| p > at && p <= to)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_moves_forward_only_through_every_status() {
        assert_eq!(steps(Status::Accepted, Reported::Sent), [Status::Sent]);
        assert_eq!(steps(Status::Accepted, Reported::Read), [Status::Sent, Status::Delivered, Status::Read], "read implies delivered and sent");
        assert_eq!(steps(Status::Sent, Reported::Delivered), [Status::Delivered]);
        assert_eq!(steps(Status::Delivered, Reported::Read), [Status::Read]);
        assert!(steps(Status::Delivered, Reported::Delivered).is_empty(), "a repeat");
        assert!(steps(Status::Read, Reported::Sent).is_empty(), "an older status");
    }

    #[test]
    fn a_failure_ends_a_message_that_did_not_reach_the_device() {
        assert_eq!(steps(Status::Accepted, Reported::Failed), [Status::Failed]);
        assert_eq!(steps(Status::Sent, Reported::Failed), [Status::Failed]);
        assert!(steps(Status::Delivered, Reported::Failed).is_empty());
        assert!(steps(Status::Read, Reported::Failed).is_empty());
        for reported in [Reported::Sent, Reported::Delivered, Reported::Read, Reported::Failed] {
            assert!(steps(Status::Failed, reported).is_empty(), "nothing moves a failed message ({reported:?})");
            assert!(steps(Status::Queued, reported).is_empty(), "nor one not yet accepted");
            assert!(steps(Status::Skipped, reported).is_empty());
        }
    }

    #[test]
    fn any_order_of_receipts_gives_the_same_statuses_once_each() {
        let all = [Reported::Sent, Reported::Delivered, Reported::Read];
        let orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        for order in orders {
            let mut status = Status::Accepted;
            let mut seen = Vec::new();
            for i in order.iter().chain(order.iter()) {
                let moved = steps(status, all[*i]);
                if let Some(last) = moved.last() {
                    status = *last;
                }
                seen.extend(moved);
            }
            assert_eq!(seen, [Status::Sent, Status::Delivered, Status::Read], "{order:?} twice");
        }
    }
}
