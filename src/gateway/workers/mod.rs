//! The loops that act on the store: processing recorded events, delivering desk events,
//! sending messages, distributing conversations to agents, closing inactive conversations, forgetting old data, and following the
//! configuration. Each decides through `conversations/` and talks to the outside world itself.

pub mod config_source;
pub mod delivery;
pub mod distributor;
pub mod inactivity;
pub mod processor;
pub mod prune;
pub mod sender;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Longest a loop waits without being woken before it looks at the store again: a wake-up from
/// another replica that was lost (its lead connection broke) delays work by at most this.
pub const POLL: Duration = Duration::from_secs(5);

/// Wakes the workers that act on what another task wrote.
#[derive(Clone, Debug, Default)]
pub struct Wakers {
    /// New events were recorded.
    pub processor: Arc<Notify>,
    /// New desk events are in the outbox.
    pub delivery: Arc<Notify>,
    /// New messages are waiting to be sent to customers.
    pub sender: Arc<Notify>,
    /// Something changed who can take which conversation.
    pub distributor: Arc<Notify>,
}
