//! Switchboard: a Kubernetes operator for customer-service messaging channels.

pub mod api;
pub mod check;
pub mod routing;
