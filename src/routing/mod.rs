//! Routing rules: compilation (here) and evaluation. Pure code shared by the controller, which
//! refuses rules that do not compile, and the gateway, which runs compiled rules.

pub mod compile;
