//! Leader election on a `coordination.k8s.io/v1` Lease, so that two replicas of the controller are
//! safe: only the holder of the Lease reconciles, a standby waits and takes over once the holder
//! stops renewing, and a holder that cannot renew within its deadline stops reconciling at once.
//!
//! The protocol is client-go's (`tools/leaderelection`), written against `Api<Lease>`: a candidate
//! reads the Lease and writes it back with the resourceVersion it read (optimistic concurrency: of
//! two candidates writing the same version, one gets 409 Conflict). A holder's lease counts as
//! expired when the record has not changed for `leaseDurationSeconds` by the *reader's* clock since
//! the reader last saw it change, so the machines' clocks need not agree. The holder renews every
//! retry period and gives up after the renew deadline, which is shorter than the lease duration:
//! it has stopped before any standby may take over.
//!
//! kube-lease-manager 0.13 builds with this crate's kube, but it keeps reporting leadership while
//! renewals fail (its watch loop only logs and backs off), takes over expired leases with an
//! unconditional patch, and has neither a renew deadline nor a retry period; hence this module.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::ControllerArgs;

/// The Lease name without `--leader-election-id`; a controller watching one namespace adds it.
const DEFAULT_ID: &str = "switchboard-controller";

/// The Lease's namespace when nothing else names one.
const DEFAULT_NAMESPACE: &str = "switchboard-system";

/// Where a pod's service account token says which namespace the pod runs in.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// How long a stopping leader tries to hand its lease back; after that the standby waits for it to
/// expire instead, which is slower but safe.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Flags of leader election (part of `switchboard controller`).
#[derive(Clone, Debug, clap::Args)]
pub struct LeaderElectionArgs {
    /// Take a Lease before reconciling, so that only one replica reconciles (`--leader-elect=false`
    /// for a single replica that must not wait for an earlier holder's lease to run out).
    #[arg(long, env = "SWITCHBOARD_LEADER_ELECT", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else the pod's service-account namespace in
    /// a cluster, else the watched namespace, else switchboard-system).
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease (default: switchboard-controller, with `-<namespace>` appended when one
    /// namespace is watched, so that controllers of different namespaces do not contend).
    #[arg(long)]
    pub leader_election_id: Option<String>,
    /// How long a standby waits after the holder's last renewal before taking the Lease over.
    #[arg(long, value_parser = crate::api::duration::parse_flag, default_value = "15s")]
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops reconciling and exits; shorter
    /// than the lease duration.
    #[arg(long, value_parser = crate::api::duration::parse_flag, default_value = "10s")]
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby tries to acquire.
    #[arg(long, value_parser = crate::api::duration::parse_flag, default_value = "2s")]
    pub retry_period: Duration,
}

/// Why leader election stopped the controller.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The timing flags cannot work together.
    #[error("leader election: {0}")]
    Timing(String),
    /// The lease was lost; the reconciles were stopped.
    #[error("lost the leader lease {lease}: {why}; stopped reconciling (a restart campaigns again)")]
    Lost {
        /// The Lease as `namespace/name`.
        lease: String,
        /// What happened.
        why: String,
    },
}

/// One election, resolved from the flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Election {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This candidate's holderIdentity.
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub lease_duration: Duration,
    /// How long the holder tries to renew before it gives up.
    pub renew_deadline: Duration,
    /// How often the holder renews and a standby tries.
    pub retry_period: Duration,
}

impl Election {
    /// The election of `args`; `pod_namespace` is the service-account namespace when in a pod.
    fn resolve(args: &ControllerArgs, pod_namespace: Option<String>, host: &str) -> Result<Election, LeaderError> {
        let le = &args.leader_election;
        if !(le.lease_duration > le.renew_deadline && le.renew_deadline > le.retry_period && !le.retry_period.is_zero()) {
            return Err(LeaderError::Timing(format!(
                "need lease duration ({:?}) > renew deadline ({:?}) > retry period ({:?}) > 0: the leader must give up before a standby may take over",
                le.lease_duration, le.renew_deadline, le.retry_period
            )));
        }
        let namespace =
            le.leader_election_namespace.clone().or(pod_namespace).or_else(|| args.namespace.clone()).unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        let name = match (&le.leader_election_id, &args.namespace) {
            (Some(id), _) => id.clone(),
            (None, Some(watched)) => format!("{DEFAULT_ID}-{watched}"),
            (None, None) => DEFAULT_ID.to_owned(),
        };
        // The pod name when there is one: a restarted container of the same pod picks up its
        // own lease at once, and its predecessor is certainly dead.
        let identity = args.instance.clone().unwrap_or_else(|| format!("{host}_{}", std::process::id()));
        Ok(Election { namespace, name, identity, lease_duration: le.lease_duration, renew_deadline: le.renew_deadline, retry_period: le.retry_period })
    }

    fn lease(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The lease duration as written to the Lease (whole seconds, at least one).
    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_millis().div_ceil(1000)).unwrap_or(i32::MAX).max(1)
    }
}

/// This machine's host name, for identities outside a pod.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "switchboard".to_owned())
}

/// What a candidate does with the Lease as it found it.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    /// Another holder's lease is still valid.
    Wait {
        /// Who holds it.
        holder: String,
    },
    /// Write this spec: a renewal of our own lease, or a take-over of a free or expired one.
    Write(LeaseSpec),
}

/// The pure decision: given the Lease's spec, whether its holder's lease has expired (by our
/// observation), and now, what this candidate writes. An empty holder is a released lease.
fn step(current: &LeaseSpec, me: &str, expired: bool, now: Timestamp, duration_seconds: i32) -> Step {
    let holder = current.holder_identity.as_deref().unwrap_or_default();
    if !holder.is_empty() && holder != me && !expired {
        return Step::Wait { holder: holder.to_owned() };
    }
    let renewing = holder == me;
    let transitions = current.lease_transitions.unwrap_or(0);
    Step::Write(LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(duration_seconds),
        acquire_time: if renewing { current.acquire_time.clone().or(Some(MicroTime(now))) } else { Some(MicroTime(now)) },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if renewing { transitions } else { transitions.saturating_add(1) }),
        // A preferred holder or strategy (coordinated leader election) is someone else's to set.
        ..current.clone()
    })
}

/// The spec that hands the lease back: no holder, and a one-second duration for candidates that
/// only look at the duration (client-go's release).
fn released(current: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        ..current.clone()
    }
}

/// Whether a lease last seen changing at `observed` has run out by `now`.
fn expired(observed: Instant, lease_duration: Duration, now: Instant) -> bool {
    now.saturating_duration_since(observed) >= lease_duration
}

/// What one attempt found.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// We hold the lease (acquired or renewed).
    Leading,
    /// Another holder's lease is still valid.
    HeldBy(String),
    /// Someone else wrote the Lease between our read and our write; read again next time.
    Conflict,
}

/// A candidate's view of the Lease.
struct Candidate {
    api: Api<Lease>,
    election: Election,
    /// The Lease's resourceVersion when we last saw it change, and when (our clock).
    observed: Option<(String, Instant)>,
    /// The Lease as we last wrote it while leading: renewals start from it without a read.
    written: Option<Lease>,
    /// When the last successful renewal started.
    renewed: Instant,
}

impl Candidate {
    fn new(client: &Client, election: Election) -> Candidate {
        Candidate { api: Api::namespaced(client.clone(), &election.namespace), election, observed: None, written: None, renewed: Instant::now() }
    }

    /// Notes the Lease's version; a new version restarts its holder's lease by our clock.
    fn observe(&mut self, lease: &Lease, now: Instant) -> Instant {
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        match &self.observed {
            Some((seen, at)) if *seen == version => *at,
            _ => {
                self.observed = Some((version, now));
                now
            }
        }
    }

    /// Acquires or renews the lease. A renewal from our last write that conflicts reads the Lease
    /// and decides again at once, so that a lost lease is noticed within one retry period.
    async fn attempt(&mut self) -> Result<Outcome, kube::Error> {
        let renewing = self.written.is_some();
        match self.attempt_once().await? {
            Outcome::Conflict if renewing => self.attempt_once().await,
            outcome => Ok(outcome),
        }
    }

    async fn attempt_once(&mut self) -> Result<Outcome, kube::Error> {
        let started = Instant::now();
        let lease = match self.written.take() {
            Some(lease) => lease,
            None => match self.api.get_opt(&self.election.name).await? {
                Some(lease) => lease,
                None => return self.create().await,
            },
        };
        let seen = self.observe(&lease, started);
        let spec = lease.spec.clone().unwrap_or_default();
        let duration = spec.lease_duration_seconds.filter(|s| *s > 0).map_or(self.election.lease_duration, |s| Duration::from_secs(s as u64));
        match step(&spec, &self.election.identity, expired(seen, duration, Instant::now()), Timestamp::now(), self.election.duration_seconds()) {
            Step::Wait { holder } => Ok(Outcome::HeldBy(holder)),
            Step::Write(spec) => {
                // The resourceVersion read stays in the metadata: the write fails with 409 if
                // anyone wrote in between.
                let mut next = lease;
                next.spec = Some(spec);
                match self.api.replace(&self.election.name, &PostParams::default(), &next).await {
                    Ok(written) => Ok(self.wrote(written)),
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(Outcome::Conflict),
                    Err(error) => Err(error),
                }
            }
        }
    }

    async fn create(&mut self) -> Result<Outcome, kube::Error> {
        let Step::Write(spec) = step(&LeaseSpec::default(), &self.election.identity, true, Timestamp::now(), self.election.duration_seconds()) else {
            unreachable!("a lease without a holder is free")
        };
        let lease = Lease {
            metadata: ObjectMeta { name: Some(self.election.name.clone()), namespace: Some(self.election.namespace.clone()), ..Default::default() },
            spec: Some(LeaseSpec { lease_transitions: Some(0), ..spec }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(written) => Ok(self.wrote(written)),
            // Another candidate created it first; the next attempt reads it.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Outcome::Conflict),
            Err(error) => Err(error),
        }
    }

    fn wrote(&mut self, lease: Lease) -> Outcome {
        self.observe(&lease, Instant::now());
        self.written = Some(lease);
        Outcome::Leading
    }

    /// Tries every retry period (jittered, as client-go does, so that standbys spread out) until
    /// the lease is ours.
    async fn acquire(&mut self) {
        let mut waiting_for: Option<String> = None;
        loop {
            let started = Instant::now();
            match self.attempt().await {
                Ok(Outcome::Leading) => {
                    self.renewed = started;
                    return;
                }
                Ok(Outcome::HeldBy(holder)) => {
                    if waiting_for.as_ref() != Some(&holder) {
                        tracing::info!(lease = %self.election.lease(), %holder, "standing by: another replica holds the lease");
                        waiting_for = Some(holder);
                    }
                }
                Ok(Outcome::Conflict) => tracing::debug!(lease = %self.election.lease(), "another candidate wrote the lease first"),
                Err(error) => tracing::warn!(lease = %self.election.lease(), %error, "cannot read or write the lease; trying again"),
            }
            tokio::time::sleep(self.election.retry_period.mul_f64(1.0 + 0.2 * fastrand::f64())).await;
        }
    }

    /// Renews every retry period while leading; returns why the lease was lost. Each renewal may
    /// take until the renew deadline, counted from the start of the last successful one.
    async fn keep(&mut self) -> String {
        let mut next = Instant::now() + self.election.retry_period;
        loop {
            let deadline = self.renewed + self.election.renew_deadline;
            tokio::time::sleep_until(next.min(deadline).into()).await;
            if Instant::now() >= deadline {
                return format!("not renewed within the renew deadline of {:?}", self.election.renew_deadline);
            }
            let started = Instant::now();
            next = started + self.election.retry_period;
            match tokio::time::timeout_at(deadline.into(), self.attempt()).await {
                Ok(Ok(Outcome::Leading)) => self.renewed = started,
                Ok(Ok(Outcome::HeldBy(holder))) => return format!("{holder} holds it now"),
                Ok(Ok(Outcome::Conflict)) => tracing::debug!(lease = %self.election.lease(), "the lease changed under a renewal; reading it again"),
                Ok(Err(error)) => tracing::warn!(lease = %self.election.lease(), %error, "cannot renew the lease; trying again until the renew deadline"),
                // Past the deadline: the top of the loop says so.
                Err(_) => {}
            }
        }
    }

    /// Hands the lease back if we hold it, so that a standby takes over at its next try rather
    /// than after the lease duration.
    async fn release(&mut self) {
        // Read afresh rather than trusting our last write: a conflict here would leave the lease
        // held until it expires.
        self.written = None;
        let Ok(Some(mut lease)) = self.api.get_opt(&self.election.name).await else { return };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.election.identity.as_str()) {
            return;
        }
        lease.spec = Some(released(&spec, Timestamp::now()));
        match self.api.replace(&self.election.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!(lease = %self.election.lease(), "released the lease"),
            Err(error) => tracing::warn!(lease = %self.election.lease(), %error, "cannot release the lease; a standby takes over when it expires"),
        }
    }
}

/// Leadership won by [`campaign`]; [`Leadership::hold`] runs the controllers under it.
pub struct Leadership {
    /// None when leader election is off.
    candidate: Option<Candidate>,
}

/// Waits until this replica holds the lease (at once when leader election is off), or None when
/// `shutdown` completes first. The health endpoints answer meanwhile, and /readyz says ready: a
/// standby is a healthy replica, and a rollout must be able to replace the leader's pod while the
/// new one waits for the lease.
pub async fn campaign(client: &Client, args: &ControllerArgs, shutdown: impl Future<Output = ()>) -> Result<Option<Leadership>, LeaderError> {
    if !args.leader_election.leader_elect {
        tracing::info!("leader election is off: reconciling without a lease");
        return Ok(Some(Leadership { candidate: None }));
    }
    let pod_namespace = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE).ok().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    let election = Election::resolve(args, pod_namespace, &host_name())?;
    tracing::info!(lease = %election.lease(), identity = %election.identity, "campaigning for the leader lease");
    let mut candidate = Candidate::new(client, election);
    let waited = Instant::now();
    tokio::select! {
        () = candidate.acquire() => {}
        () = shutdown => {
            // An attempt cut short may still have taken the lease.
            let _ = tokio::time::timeout(RELEASE_TIMEOUT, candidate.release()).await;
            tracing::info!("stopped before becoming the leader");
            return Ok(None);
        }
    }
    let election = &candidate.election;
    tracing::info!(lease = %election.lease(), identity = %election.identity, waited = ?waited.elapsed(), "became the leader: reconciling");
    Ok(Some(Leadership { candidate: Some(candidate) }))
}

impl Leadership {
    /// Runs `work` (the controllers) while renewing the lease, then hands the lease back. If the
    /// lease is lost, `work` is dropped at once — every reconcile in flight is cancelled — and the
    /// error says why: the process should exit and campaign again, as client-go controllers do.
    pub async fn hold<T>(mut self, work: impl Future<Output = T>) -> Result<T, LeaderError> {
        let Some(mut candidate) = self.candidate.take() else { return Ok(work.await) };
        let done = tokio::select! {
            done = work => done,
            why = candidate.keep() => {
                let lease = candidate.election.lease();
                tracing::error!(%lease, %why, "lost the leader lease: stopping every reconcile now and exiting");
                return Err(LeaderError::Lost { lease, why });
            }
        };
        // The reconciles have finished: only now may a standby start.
        if tokio::time::timeout(RELEASE_TIMEOUT, candidate.release()).await.is_err() {
            tracing::warn!(lease = %candidate.election.lease(), "releasing the lease timed out; a standby takes over when it expires");
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    const ME: &str = "pod-a";

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn held_by(holder: &str, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(at(0))),
            renew_time: Some(MicroTime(at(10))),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    fn written(step: Step) -> LeaseSpec {
        match step {
            Step::Write(spec) => spec,
            Step::Wait { holder } => panic!("waits for {holder}"),
        }
    }

    #[test]
    fn a_valid_lease_of_another_holder_is_waited_for() {
        assert_eq!(step(&held_by("pod-b", 3), ME, false, at(20), 15), Step::Wait { holder: "pod-b".into() });
    }

    #[test]
    fn an_expired_lease_is_taken_over_with_one_more_transition() {
        let spec = written(step(&held_by("pod-b", 3), ME, true, at(20), 15));
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(20))));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }

    #[test]
    fn a_renewal_keeps_the_acquire_time_and_the_transitions() {
        let spec = written(step(&held_by(ME, 3), ME, false, at(20), 15));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(20))));
        assert_eq!(spec.lease_transitions, Some(3));
        // Even an expired lease of our own is simply renewed (a restarted container of the pod).
        assert_eq!(written(step(&held_by(ME, 3), ME, true, at(40), 15)).lease_transitions, Some(3));
    }

    #[test]
    fn a_released_or_empty_lease_is_free_at_once() {
        let free = released(&held_by("pod-b", 3), at(12));
        assert_eq!(free.holder_identity.as_deref(), Some(""));
        assert_eq!(free.lease_duration_seconds, Some(1));
        assert_eq!(free.lease_transitions, Some(3));
        let spec = written(step(&free, ME, false, at(13), 15));
        assert_eq!((spec.holder_identity.as_deref(), spec.lease_transitions), (Some(ME), Some(4)));
        let spec = written(step(&LeaseSpec::default(), ME, false, at(13), 15));
        assert_eq!((spec.holder_identity.as_deref(), spec.lease_transitions), (Some(ME), Some(1)));
    }

    #[test]
    fn fields_of_coordinated_election_are_kept() {
        let current = LeaseSpec { preferred_holder: Some("pod-c".into()), strategy: Some("OldestEmulationVersion".into()), ..held_by("pod-b", 1) };
        let spec = written(step(&current, ME, true, at(30), 15));
        assert_eq!(spec.preferred_holder.as_deref(), Some("pod-c"));
        assert_eq!(spec.strategy.as_deref(), Some("OldestEmulationVersion"));
    }

    #[test]
    fn expiry_counts_from_when_the_record_was_seen_to_change() {
        let seen = Instant::now();
        assert!(!expired(seen, Duration::from_secs(15), seen + Duration::from_secs(14)));
        assert!(expired(seen, Duration::from_secs(15), seen + Duration::from_secs(15)));
        // A clock that seems to go backwards never expires a lease early.
        assert!(!expired(seen + Duration::from_secs(1), Duration::from_secs(15), seen));
    }

    /// An API server holding one Lease, with resourceVersion preconditions as the real one has;
    /// `failing` makes every request fail with 500 (an unreachable or broken API server).
    #[derive(Default)]
    struct Server {
        lease: Option<Lease>,
        version: u64,
        failing: bool,
    }

    type Shared = std::sync::Arc<std::sync::Mutex<Server>>;

    fn respond(code: u16, body: serde_json::Value) -> http::Response<kube::client::Body> {
        let body = kube::client::Body::from(body.to_string().into_bytes());
        http::Response::builder().status(code).header("content-type", "application/json").body(body).unwrap()
    }

    fn status(code: u16, reason: &str) -> http::Response<kube::client::Body> {
        respond(code, serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": reason}))
    }

    async fn serve(server: Shared, request: http::Request<kube::client::Body>) -> http::Response<kube::client::Body> {
        let (parts, body) = request.into_parts();
        let body = body.collect_bytes().await.unwrap();
        let mut server = server.lock().unwrap();
        if server.failing {
            return status(500, "InternalError");
        }
        let current = server.lease.clone();
        match (parts.method.as_str(), current) {
            ("GET", Some(lease)) => respond(200, serde_json::to_value(lease).unwrap()),
            ("GET", None) => status(404, "NotFound"),
            ("POST", Some(_)) => status(409, "AlreadyExists"),
            ("POST", None) => respond(201, serde_json::to_value(write(&mut server, &body)).unwrap()),
            ("PUT", Some(lease)) => {
                let sent: Lease = serde_json::from_slice(&body).unwrap();
                if sent.metadata.resource_version != lease.metadata.resource_version {
                    return status(409, "Conflict");
                }
                respond(200, serde_json::to_value(write(&mut server, &body)).unwrap())
            }
            (method, _) => panic!("unexpected {method} {}", parts.uri),
        }
    }

    /// Stores the Lease in `body` under a new resourceVersion.
    fn write(server: &mut Server, body: &[u8]) -> Lease {
        let mut lease: Lease = serde_json::from_slice(body).unwrap();
        server.version += 1;
        lease.metadata.resource_version = Some(server.version.to_string());
        server.lease = Some(lease.clone());
        lease
    }

    fn candidate(server: &Shared, identity: &str, lease_duration: Duration) -> Candidate {
        let server = server.clone();
        let service = tower::service_fn(move |request| {
            let server = server.clone();
            async move { Ok::<_, std::convert::Infallible>(serve(server, request).await) }
        });
        let election = Election {
            namespace: "ops".into(),
            name: DEFAULT_ID.into(),
            identity: identity.into(),
            lease_duration,
            renew_deadline: lease_duration.mul_f64(0.6),
            retry_period: lease_duration / 10,
        };
        Candidate::new(&Client::new(service, "ops"), election)
    }

    fn holder(server: &Shared) -> Option<String> {
        server.lock().unwrap().lease.as_ref()?.spec.as_ref()?.holder_identity.clone()
    }

    #[tokio::test]
    async fn one_candidate_leads_and_the_other_takes_over_once_renewals_stop() {
        let server = Shared::default();
        let (mut a, mut b) = (candidate(&server, "a", Duration::from_secs(1)), candidate(&server, "b", Duration::from_secs(1)));
        assert_eq!(a.attempt().await.unwrap(), Outcome::Leading, "the first creates the lease");
        assert_eq!(b.attempt().await.unwrap(), Outcome::HeldBy("a".into()));
        assert_eq!(a.attempt().await.unwrap(), Outcome::Leading, "a renews");
        // b saw the renewal just now: the lease runs for another second from here, by b's clock.
        let renewed = Instant::now();
        assert_eq!(b.attempt().await.unwrap(), Outcome::HeldBy("a".into()));
        b.acquire().await;
        assert!(renewed.elapsed() >= Duration::from_secs(1), "b took over after {:?}", renewed.elapsed());
        assert_eq!(holder(&server).as_deref(), Some("b"));
        let spec = server.lock().unwrap().lease.clone().unwrap().spec.unwrap();
        assert_eq!(spec.lease_transitions, Some(1));
        // a's next renewal finds b's lease, valid: a has lost it.
        let version = server.lock().unwrap().version;
        assert_eq!(a.attempt().await.unwrap(), Outcome::HeldBy("b".into()), "a's stale renewal is refused, and a reads again");
        assert_eq!(server.lock().unwrap().version, version, "nothing written");
    }

    #[tokio::test]
    async fn a_leader_gives_up_at_the_renew_deadline_when_the_api_fails() {
        let server = Shared::default();
        let mut a = candidate(&server, "a", Duration::from_secs(1));
        a.acquire().await;
        let acquired = Instant::now();
        server.lock().unwrap().failing = true;
        let why = a.keep().await;
        let after = acquired.elapsed();
        assert!(why.contains("renew deadline"), "{why}");
        // 600 ms after the last renewal: before the 1 s lease could pass to anyone else.
        assert!(after >= Duration::from_millis(550) && after < Duration::from_millis(900), "gave up after {after:?}");
    }

    #[tokio::test]
    async fn a_leader_stops_at_its_next_renewal_when_someone_else_holds_the_lease() {
        let server = Shared::default();
        let mut a = candidate(&server, "a", Duration::from_secs(1));
        a.acquire().await;
        {
            let mut server = server.lock().unwrap();
            let lease = server.lease.as_mut().unwrap();
            lease.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
            lease.metadata.resource_version = Some("999".into());
        }
        let started = Instant::now();
        let why = a.keep().await;
        assert_eq!(why, "intruder holds it now");
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_released_lease_is_taken_at_once() {
        let server = Shared::default();
        let (mut a, mut b) = (candidate(&server, "a", Duration::from_secs(15)), candidate(&server, "b", Duration::from_secs(15)));
        a.acquire().await;
        assert_eq!(b.attempt().await.unwrap(), Outcome::HeldBy("a".into()));
        a.release().await;
        assert_eq!(holder(&server).as_deref(), Some(""));
        assert_eq!(b.attempt().await.unwrap(), Outcome::Leading, "no need to wait 15 s");
        // Releasing a lease someone else holds leaves it alone.
        a.release().await;
        assert_eq!(holder(&server).as_deref(), Some("b"));
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControllerArgs,
    }

    fn args(flags: &[&str]) -> ControllerArgs {
        Cli::try_parse_from(std::iter::once("controller").chain(flags.iter().copied())).unwrap().args
    }

    #[test]
    fn the_defaults_follow_the_watched_namespace() {
        // Every namespace: the well-known name in the controller's own namespace.
        let all = Election::resolve(&args(&["--instance", "pod-a"]), Some("ops".into()), "host").unwrap();
        assert_eq!((all.namespace.as_str(), all.name.as_str(), all.identity.as_str()), ("ops", DEFAULT_ID, "pod-a"));
        let timing = (all.lease_duration.as_secs(), all.renew_deadline.as_secs(), all.retry_period.as_secs());
        assert_eq!(timing, (15, 10, 2));
        let outside = Election::resolve(&args(&[]), None, "host").unwrap();
        assert_eq!(outside.namespace, DEFAULT_NAMESPACE);
        assert_eq!(outside.identity, format!("host_{}", std::process::id()));
        // One namespace: a lease of its own there, so that controllers of other namespaces never contend.
        let one = Election::resolve(&args(&["--namespace", "t-1"]), None, "host").unwrap();
        assert_eq!((one.namespace.as_str(), one.name.as_str()), ("t-1", "switchboard-controller-t-1"));
        let flags = ["--namespace", "t-1", "--leader-election-namespace", "le", "--leader-election-id", "x"];
        let named = Election::resolve(&args(&flags), None, "host").unwrap();
        assert_eq!((named.namespace.as_str(), named.name.as_str()), ("le", "x"));
    }

    #[test]
    fn leader_election_can_be_turned_off_and_timing_must_be_consistent() {
        assert!(args(&[]).leader_election.leader_elect);
        assert!(args(&["--leader-elect"]).leader_election.leader_elect);
        assert!(!args(&["--leader-elect=false"]).leader_election.leader_elect);
        let short = args(&["--lease-duration", "4s", "--renew-deadline", "3s", "--retry-period", "1s"]);
        assert_eq!(Election::resolve(&short, None, "h").unwrap().duration_seconds(), 4);
        for bad in [["--lease-duration", "10s", "--renew-deadline", "10s"], ["--renew-deadline", "2s", "--retry-period", "2s"]] {
            let error = Election::resolve(&args(&bad), None, "h").unwrap_err();
            assert!(error.to_string().contains("lease duration"), "{error}");
        }
        let odd = args(&["--lease-duration", "2500ms", "--renew-deadline", "2s", "--retry-period", "500ms"]);
        assert_eq!(Election::resolve(&odd, None, "h").unwrap().duration_seconds(), 3, "rounded up, never shorter");
    }
}
