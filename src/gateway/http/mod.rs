//! The gateway's HTTP surface: the public webhook port (webhooks and uploaded files), the
//! internal agent API (and the local demo's development clock beside it), and the metrics and
//! health probes.

pub mod agent_api;
pub mod dev_clock;
pub mod media;
pub mod probes;
pub mod webhook;
