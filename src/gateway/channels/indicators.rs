//! Read receipts and typing indicators: what the agent API's read and typing calls show the
//! customer. They are made at once, while the desk waits, and never queued or stored: an
//! indicator that arrives late is worse than none, and a desk calls again when it matters.

use thiserror::Error;

use crate::gateway::model::event::Message;
use crate::providers::ProviderError;
use crate::providers::line::{LOADING_SECONDS, LOADING_STEP_SECONDS};

/// The customer's side of a conversation, as far as the indicators need it.
#[derive(Clone, Copy, Debug)]
pub struct Chat<'a> {
    /// The provider's ID of the customer (LINE user ID, `whatsapp:+E164`).
    pub customer_id: &'a str,
    /// The customer's latest message, if they sent any.
    pub last_inbound: Option<&'a Message>,
}

/// What the customer was shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown {
    /// How long the typing indicator shows; `None` when the channel decides (WhatsApp: until
    /// the reply, at most 25 seconds), or for a read receipt.
    pub typing_seconds: Option<u32>,
    /// Whether the customer's messages up to the latest are now marked as read.
    pub marked_read: bool,
}

/// Why an indicator was not shown.
#[derive(Debug, Error)]
pub enum IndicatorError {
    /// The channel's provider documents no such call.
    #[error("{0}")]
    NotSupported(&'static str),
    /// The call needs a message of the customer to refer to, and there is none.
    #[error("the customer has sent no message in this conversation")]
    NoInboundMessage,
    /// The customer's latest message came without what the provider needs to mark it read.
    #[error("{0}")]
    NoReadToken(&'static str),
    /// The provider refused or failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// The typing indicator's duration for a request of `seconds`: 5 to 60, rounded up to LINE's
/// multiples of 5 (every channel gets the same rule, so that a desk need not know the channel).
pub fn typing_seconds(seconds: i64) -> Result<u32, String> {
    let (min, max) = (i64::from(*LOADING_SECONDS.start()), i64::from(*LOADING_SECONDS.end()));
    if !(min..=max).contains(&seconds) {
        return Err(format!("seconds: must be from {min} to {max}"));
    }
    let step = i64::from(LOADING_STEP_SECONDS);
    let rounded = (seconds + step - 1) / step * step;
    Ok(u32::try_from(rounded).expect("at most 60"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_seconds_round_up_to_multiples_of_five() {
        for (asked, shown) in [(5, 5), (6, 10), (9, 10), (10, 10), (11, 15), (56, 60), (60, 60)] {
            assert_eq!(typing_seconds(asked), Ok(shown), "{asked}");
        }
    }

    #[test]
    fn typing_seconds_outside_5_to_60_are_refused() {
        for asked in [i64::MIN, -5, 0, 4, 61, 65, i64::MAX] {
            assert_eq!(typing_seconds(asked), Err("seconds: must be from 5 to 60".to_owned()), "{asked}");
        }
    }
}
