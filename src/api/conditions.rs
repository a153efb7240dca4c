//! Condition bookkeeping shared by every reconciler: set a condition, compare condition sets,
//! and derive `Ready` from the others.
//!
//! Semantics follow metav1.Condition as kstatus, Flux and Crossplane read it:
//! `lastTransitionTime` moves only when `status` flips, so a steady state writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The `Ready` condition type every kind carries.
pub const READY: &str = "Ready";

/// The status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet (in progress, or not checked).
    Unknown,
}

impl Status {
    /// The string Kubernetes stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "True" => Status::True,
            "False" => Status::False,
            _ => Status::Unknown,
        }
    }
}

/// One observation a reconciler makes: a condition without its timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Condition type, e.g. CredentialsValid.
    pub type_: String,
    /// Its status.
    pub status: Status,
    /// CamelCase reason, e.g. SecretNotFound.
    pub reason: String,
    /// A sentence for people. Never contains a secret value.
    pub message: String,
}

impl Observation {
    /// Builds an observation.
    pub fn new(type_: &str, status: Status, reason: &str, message: impl Into<String>) -> Self {
        Self { type_: type_.to_owned(), status, reason: reason.to_owned(), message: message.into() }
    }
}

/// Records `obs` in `conditions`. The transition time is `now` for a new condition or a status
/// flip, and kept otherwise. Returns whether anything but timestamps changed.
pub fn set(conditions: &mut Vec<Condition>, obs: Observation, generation: Option<i64>, now: Timestamp) -> bool {
    let status = obs.status.as_str().to_owned();
    match conditions.iter_mut().find(|c| c.type_ == obs.type_) {
        Some(existing) => {
            let changed = existing.status != status
                || existing.reason != obs.reason
                || existing.message != obs.message
                || existing.observed_generation != generation;
            if existing.status != status {
                existing.last_transition_time = Time(now);
            }
            existing.status = status;
            existing.reason = obs.reason;
            existing.message = obs.message;
            existing.observed_generation = generation;
            changed
        }
        None => {
            conditions.push(Condition {
                type_: obs.type_,
                status,
                reason: obs.reason,
                message: obs.message,
                observed_generation: generation,
                last_transition_time: Time(now),
            });
            true
        }
    }
}

/// The condition of the given type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of the given type is present and True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Whether two condition sets say the same thing, ignoring order and transition times.
pub fn equivalent(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().all(|x| {
            find(b, &x.type_).is_some_and(|y| {
                x.status == y.status
                    && x.reason == y.reason
                    && x.message == y.message
                    && x.observed_generation == y.observed_generation
            })
        })
}

/// Derives `Ready` from the conditions it depends on, in the order given: the first False one
/// makes Ready False with its reason and message; otherwise the first Unknown or missing one
/// makes it Unknown; otherwise Ready is True.
pub fn ready(conditions: &[Condition], depends_on: &[&str]) -> Observation {
    let mut pending: Option<Observation> = None;
    for type_ in depends_on {
        match find(conditions, type_) {
            Some(c) if Status::parse(&c.status) == Status::False => {
                return Observation::new(READY, Status::False, &c.reason, format!("{type_}: {}", c.message));
            }
            Some(c) if Status::parse(&c.status) == Status::True => {}
            Some(c) => {
                pending.get_or_insert_with(|| {
                    Observation::new(READY, Status::Unknown, &c.reason, format!("{type_}: {}", c.message))
                });
            }
            None => {
                pending.get_or_insert_with(|| {
                    Observation::new(READY, Status::Unknown, "Progressing", format!("{type_} has not been determined yet"))
                });
            }
        }
    }
    pending.unwrap_or_else(|| Observation::new(READY, Status::True, "Ready", format!("{} are True", depends_on.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn obs(type_: &str, status: Status, reason: &str) -> Observation {
        Observation::new(type_, status, reason, format!("{type_} is {reason}"))
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut c = Vec::new();
        assert!(set(&mut c, obs("CredentialsValid", Status::False, "SecretNotFound"), Some(1), at(10)));
        assert_eq!(c[0].last_transition_time, Time(at(10)));

        // Same status, new reason: a change, but the transition time stays.
        assert!(set(&mut c, obs("CredentialsValid", Status::False, "Unauthorized"), Some(1), at(20)));
        assert_eq!(c[0].last_transition_time, Time(at(10)));
        assert_eq!(c[0].reason, "Unauthorized");

        // Flip: the time moves.
        assert!(set(&mut c, obs("CredentialsValid", Status::True, "Valid"), Some(1), at(30)));
        assert_eq!(c[0].last_transition_time, Time(at(30)));

        // Identical: no change, nothing moves.
        assert!(!set(&mut c, obs("CredentialsValid", Status::True, "Valid"), Some(1), at(40)));
        assert_eq!(c[0].last_transition_time, Time(at(30)));

        // A new generation is a change even with the same status.
        assert!(set(&mut c, obs("CredentialsValid", Status::True, "Valid"), Some(2), at(50)));
        assert_eq!(c[0].observed_generation, Some(2));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn equivalence_ignores_timestamps_and_order() {
        let mut a = Vec::new();
        set(&mut a, obs("A", Status::True, "Ok"), Some(1), at(1));
        set(&mut a, obs("B", Status::False, "Bad"), Some(1), at(1));
        let mut b = Vec::new();
        set(&mut b, obs("B", Status::False, "Bad"), Some(1), at(99));
        set(&mut b, obs("A", Status::True, "Ok"), Some(1), at(99));
        assert!(equivalent(&a, &b));

        set(&mut b, obs("A", Status::True, "Other"), Some(1), at(99));
        assert!(!equivalent(&a, &b));
        b.pop();
        assert!(!equivalent(&a, &b));
    }

    #[test]
    fn ready_follows_first_failure_then_first_unknown() {
        let mut c = Vec::new();
        let r = ready(&c, &["CredentialsValid", "WebhookRegistered"]);
        assert_eq!((r.status, r.reason.as_str()), (Status::Unknown, "Progressing"));

        set(&mut c, obs("CredentialsValid", Status::True, "Valid"), None, at(1));
        set(&mut c, obs("WebhookRegistered", Status::Unknown, "Registering"), None, at(1));
        let r = ready(&c, &["CredentialsValid", "WebhookRegistered"]);
        assert_eq!((r.status, r.reason.as_str()), (Status::Unknown, "Registering"));

        set(&mut c, obs("GatewayReady", Status::False, "Progressing"), None, at(1));
        set(&mut c, obs("WebhookRegistered", Status::False, "EndpointMismatch"), None, at(1));
        let r = ready(&c, &["CredentialsValid", "WebhookRegistered", "GatewayReady"]);
        assert_eq!((r.status, r.reason.as_str()), (Status::False, "EndpointMismatch"));
        assert!(r.message.starts_with("WebhookRegistered: "));

        set(&mut c, obs("WebhookRegistered", Status::True, "Registered"), None, at(1));
        set(&mut c, obs("GatewayReady", Status::True, "Available"), None, at(1));
        let r = ready(&c, &["CredentialsValid", "WebhookRegistered", "GatewayReady"]);
        assert_eq!(r.status, Status::True);
        assert!(is_true(&c, "GatewayReady"));
    }
}
