//! Decisions made inside one store transaction: what an inbound event does to its
//! conversation, what an agent's action does, which automated messages go out, where a
//! conversation is routed, which template and attachment may be sent, when a quiet
//! conversation closes, how a send's outcome is recorded, and what a delivery receipt changes. Each takes the transaction
//! ([`crate::gateway::store::Tx`]) and the time; none does network I/O.

pub mod actions;
pub mod agents;
pub mod attachments;
pub mod automated;
pub mod desk_events;
pub mod distribute;
pub mod inactive;
pub mod inbound;
pub mod outgoing;
pub mod receipts;
pub mod route;
pub mod templates;
