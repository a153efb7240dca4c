//! Plain types, without I/O: what the gateway keeps, queues and sends.

pub mod agent;
pub mod assignment;
pub mod conversation;
pub mod desk_event;
pub mod event;
pub mod file;
pub mod history;
pub mod outbound;
pub mod queue;
pub mod receipt;
pub mod receiver;
pub mod upload;
