//! Routing rules: compilation, evaluation and queue operating hours. Pure code shared by the
//! controller, which refuses rules that do not compile, and the gateway, which runs them.

pub mod compile;
pub mod evaluate;
pub mod hours;
