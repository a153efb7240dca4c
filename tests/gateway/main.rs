//! Placeholder replaced by the gateway test suite.
