//! A conversation's messages both ways, oldest first, as the store keeps them.

use super::event::Message;
use super::outbound::OutboundMessage;

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq)]
pub enum StoredMessage {
    /// From the customer.
    In {
        /// The gateway's ID of the message.
        id: String,
        /// When the provider says it was sent, in milliseconds since the epoch.
        created_ms: i64,
        /// The message.
        message: Message,
    },
    /// To the customer.
    Out(OutboundMessage),
}
