//! The log of provider API requests the simulator received, so that tests can count calls
//! (retries, backoff) per route. Credentials and bodies are never recorded.

use std::collections::VecDeque;

use serde::Serialize;

use super::clock;
use super::errors::Provider;
use super::pattern::RoutePattern;

/// The log keeps at most this many requests, dropping the oldest.
const CAPACITY: usize = 10_000;

/// One request as the admin API lists it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// Increasing sequence number.
    pub seq: u64,
    /// When it arrived (RFC 3339, milliseconds).
    pub at: String,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The query string, when there was one.
    pub query: Option<String>,
    /// The provider the path belongs to.
    pub provider: Provider,
    /// The `X-Line-Retry-Key` header, when sent.
    pub retry_key: Option<String>,
    /// The answer's status; none while in flight or when the connection was dropped.
    pub status: Option<u16>,
    /// The injected fault (`latency`, `rateLimit`, `serverError`, `drop`), if one applied.
    pub fault: Option<String>,
}

/// The request log.
#[derive(Debug, Default)]
pub struct RequestLog {
    next_seq: u64,
    records: VecDeque<RequestRecord>,
}

impl RequestLog {
    /// Records an arriving request; returns its sequence number for [`RequestLog::finish`].
    pub fn begin(&mut self, method: &str, path: &str, query: Option<&str>, retry_key: Option<&str>) -> u64 {
        self.next_seq += 1;
        if self.records.len() == CAPACITY {
            self.records.pop_front();
        }
        self.records.push_back(RequestRecord {
            seq: self.next_seq,
            at: clock::rfc3339_millis(clock::now()),
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.map(str::to_owned),
            provider: Provider::for_path(path),
            retry_key: retry_key.map(str::to_owned),
            status: None,
            fault: None,
        });
        self.next_seq
    }

    /// Notes the fault applied to a request.
    pub fn set_fault(&mut self, seq: u64, fault: &str) {
        if let Some(record) = self.find(seq) {
            record.fault = Some(fault.to_owned());
        }
    }

    /// Notes the status a request was answered with.
    pub fn finish(&mut self, seq: u64, status: u16) {
        if let Some(record) = self.find(seq) {
            record.status = Some(status);
        }
    }

    fn find(&mut self, seq: u64) -> Option<&mut RequestRecord> {
        // Sequence numbers increase along the deque, so a binary search finds the record.
        let index = self.records.binary_search_by_key(&seq, |r| r.seq).ok()?;
        self.records.get_mut(index)
    }

    /// The requests matching a route pattern (all when none is given), oldest first.
    pub fn list(&self, route: Option<&RoutePattern>) -> Vec<RequestRecord> {
        self.records.iter().filter(|r| route.is_none_or(|p| p.matches(&r.method, &r.path))).cloned().collect()
    }

    /// Forgets every request.
    pub fn clear(&mut self) {
        self.records.clear();
    }
}
