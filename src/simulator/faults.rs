//! Injected faults: per route, for a number of calls or for a while, a request is slowed down,
//! refused with 429, a 5xx or the provider's refusal of the credentials (401 or 403), or its
//! connection is closed without an answer.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::clock;
use super::config::duration_text;
use super::pattern::RoutePattern;

/// What happens to a matching request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum Fault {
    /// The answer is delayed by `delay`.
    Latency {
        /// The added delay.
        #[serde(with = "duration_text")]
        delay: Duration,
    },
    /// 429 in the provider's shape with `Retry-After: retryAfter` (seconds).
    RateLimit {
        /// Seconds for the `Retry-After` header.
        #[serde(default = "one_second")]
        retry_after: u64,
    },
    /// A 5xx in the provider's shape.
    ServerError {
        /// The status, 500 to 599.
        #[serde(default = "internal_server_error")]
        status: u16,
    },
    /// The provider's answer to credentials it does not take (401), or to credentials without
    /// the permission (403), as if the access token or auth token had been revoked.
    Unauthorized {
        /// The status, 401 or 403.
        #[serde(default = "unauthorized")]
        status: u16,
    },
    /// The connection is closed without an answer.
    Drop,
}

impl Fault {
    /// What the fault does to a request.
    pub fn action(&self) -> Action {
        match self {
            Self::Latency { delay } => Action::Delay(*delay),
            Self::RateLimit { retry_after } => Action::Refuse(Refusal::RateLimit { retry_after: *retry_after }),
            Self::ServerError { status } => Action::Refuse(Refusal::ServerError { status: *status }),
            Self::Unauthorized { status } => Action::Refuse(Refusal::Unauthorized { status: *status }),
            Self::Drop => Action::Refuse(Refusal::Drop),
        }
    }

    /// The kind's name, as the admin API writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Latency { .. } => "latency",
            Self::RateLimit { .. } => "rateLimit",
            Self::ServerError { .. } => "serverError",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Drop => "drop",
        }
    }
}

/// What a fault does to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The real answer comes this much later.
    Delay(Duration),
    /// The real answer is replaced.
    Refuse(Refusal),
}

/// What replaces the real answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 429 with `Retry-After`.
    RateLimit {
        /// Seconds.
        retry_after: u64,
    },
    /// A 5xx.
    ServerError {
        /// The status.
        status: u16,
    },
    /// 401 or 403 in the provider's shape.
    Unauthorized {
        /// The status.
        status: u16,
    },
    /// No answer: the connection is closed.
    Drop,
}

fn one_second() -> u64 {
    1
}

fn internal_server_error() -> u16 {
    500
}

fn unauthorized() -> u16 {
    401
}

/// A fault as the admin API takes it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRequest {
    /// `METHOD /path-glob`.
    pub route: String,
    /// The fault.
    #[serde(flatten)]
    pub fault: Fault,
    /// Applies to this many matching calls, then goes away.
    #[serde(default)]
    pub times: Option<u32>,
    /// Applies for this long, then goes away.
    #[serde(default, with = "optional_duration")]
    pub duration: Option<Duration>,
    /// Apply the fault after the request was handled (its effects happen, its answer is
    /// replaced), e.g. a push that was accepted but whose answer was lost.
    #[serde(default)]
    pub after_handler: bool,
}

/// A fault in force, as the admin API lists it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// Identifies the rule for removal.
    pub id: u64,
    /// The route pattern.
    pub route: String,
    /// The fault.
    #[serde(flatten)]
    pub fault: Fault,
    /// Calls left, when limited.
    pub remaining: Option<u32>,
    /// When the rule expires (RFC 3339), when limited.
    pub until: Option<String>,
    /// Whether the fault applies after the handler.
    pub after_handler: bool,
    /// Calls the rule has applied to.
    pub hits: u64,
    #[serde(skip)]
    pattern: RoutePattern,
    #[serde(skip)]
    expires: Option<Timestamp>,
}

/// The fault to apply to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// What it does.
    pub action: Action,
    /// The fault kind's name, for the request log.
    pub name: &'static str,
    /// Whether it applies after the handler ran.
    pub after_handler: bool,
}

/// The faults in force, first added first matched.
#[derive(Debug, Default)]
pub struct FaultTable {
    next_id: u64,
    rules: Vec<FaultRule>,
}

impl FaultTable {
    /// Adds a rule; the error says what is wrong with the request.
    pub fn add(&mut self, request: FaultRequest) -> Result<FaultRule, String> {
        let pattern = RoutePattern::parse(&request.route)?;
        if let Fault::ServerError { status } = request.fault
            && !(500..=599).contains(&status)
        {
            return Err(format!("serverError status {status} is not between 500 and 599"));
        }
        if let Fault::Unauthorized { status } = request.fault
            && !matches!(status, 401 | 403)
        {
            return Err(format!("unauthorized status {status} is not 401 or 403"));
        }
        if request.times == Some(0) {
            return Err("times must be at least 1".to_owned());
        }
        self.next_id += 1;
        let expires = request.duration.map(clock::after_now);
        let rule = FaultRule {
            id: self.next_id,
            route: pattern.as_str().to_owned(),
            fault: request.fault,
            remaining: request.times,
            until: expires.map(clock::rfc3339),
            after_handler: request.after_handler,
            hits: 0,
            pattern,
            expires,
        };
        self.rules.push(rule.clone());
        Ok(rule)
    }

    /// The fault for a request, if a rule matches; counts the call against the rule.
    pub fn take(&mut self, method: &str, path: &str) -> Option<Applied> {
        let now = clock::now();
        self.rules.retain(|r| r.expires.is_none_or(|e| e > now));
        let index = self.rules.iter().position(|r| r.pattern.matches(method, path))?;
        let rule = &mut self.rules[index];
        rule.hits += 1;
        let applied = Applied { action: rule.fault.action(), name: rule.fault.name(), after_handler: rule.after_handler };
        if let Some(remaining) = rule.remaining.as_mut() {
            *remaining -= 1;
            if *remaining == 0 {
                self.rules.remove(index);
            }
        }
        Some(applied)
    }

    /// The rules in force.
    pub fn list(&mut self) -> Vec<FaultRule> {
        let now = clock::now();
        self.rules.retain(|r| r.expires.is_none_or(|e| e > now));
        self.rules.clone()
    }

    /// Removes one rule; false when there is none with that ID.
    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        self.rules.len() != before
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }
}

/// Serde for an optional duration string.
mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| {
                crate::api::duration::parse(&text)
                    .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a duration like 500ms, 2s or 5m")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> FaultRequest {
        serde_json::from_str(json).expect("a fault request")
    }

    #[test]
    fn counted_rules_run_out() {
        let mut table = FaultTable::default();
        table.add(request(r#"{"route": "POST /v2/bot/message/push", "kind": "rateLimit", "retryAfter": 3, "times": 2}"#)).expect("added");
        let applied = table.take("POST", "/v2/bot/message/push").expect("a fault");
        assert_eq!(applied.action, Action::Refuse(Refusal::RateLimit { retry_after: 3 }));
        assert!(table.take("GET", "/v2/bot/message/push").is_none());
        assert!(table.take("POST", "/v2/bot/message/push").is_some());
        assert!(table.take("POST", "/v2/bot/message/push").is_none());
    }

    #[test]
    fn parses_every_kind() {
        let latency = request(r#"{"route": "* /**", "kind": "latency", "delay": "250ms", "duration": "1s"}"#);
        assert_eq!(latency.fault, Fault::Latency { delay: Duration::from_millis(250) });
        assert_eq!(latency.duration, Some(Duration::from_secs(1)));
        assert_eq!(request(r#"{"route": "GET /x", "kind": "serverError"}"#).fault, Fault::ServerError { status: 500 });
        assert_eq!(request(r#"{"route": "GET /x", "kind": "drop", "afterHandler": true}"#).fault, Fault::Drop);
        assert_eq!(request(r#"{"route": "GET /x", "kind": "unauthorized"}"#).fault, Fault::Unauthorized { status: 401 });
        assert_eq!(request(r#"{"route": "GET /x", "kind": "unauthorized", "status": 403}"#).fault, Fault::Unauthorized { status: 403 });
        let mut table = FaultTable::default();
        assert!(table.add(request(r#"{"route": "GET /x", "kind": "serverError", "status": 404}"#)).is_err());
        assert!(table.add(request(r#"{"route": "GET /x", "kind": "drop", "times": 0}"#)).is_err());
        assert!(table.add(request(r#"{"route": "GET /x", "kind": "unauthorized", "status": 400}"#)).is_err());
    }
}
