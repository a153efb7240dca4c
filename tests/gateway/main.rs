//! The `switchboard gateway` binary end to end: signed webhooks from the in-process provider
//! simulator in, conversations routed, greetings out through the simulated provider, signed
//! events to a test desk from the durable outbox, and the agent API (`--agent-api-addr`):
//! answers, templates and attachments out, assignment, closing, bots escalating. Each test has
//! its own temp dir, simulator, desk and gateway process, so tests run in parallel. No cluster
//! is needed (the ConfigMap source is tested in the e2e suite, `tests/e2e/gateway_configmap.rs`).

mod agent;
mod agent_attachments;
mod agent_media_auth;
mod agent_whatsapp;
mod bot;
mod config_reload;
mod crash;
mod credentials;
mod delivery;
mod desk;
mod distribution;
mod flood;
mod harness;
mod inbound;
mod indicators;
mod lifecycle;
mod load;
mod receipts;
mod refusals;
mod replicas;
mod twilio;
