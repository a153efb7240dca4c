//! Switchboard: a Kubernetes operator for customer-service messaging channels.

// kube-derive's printcolumn(...) attributes repeat `type_ = "string"`, which this lint takes for
// a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

pub mod api;
pub mod backoff;
pub mod check;
pub mod config;
pub mod controller;
pub mod gateway;
pub mod kube_client;
pub mod local;
pub mod metrics;
pub mod postgres_env;
pub mod providers;
pub mod routing;
pub mod serve;
pub mod shutdown;
pub mod signing;
pub mod simulator;
