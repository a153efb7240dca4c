//! The inbound table: verified webhook events, recorded before the webhook is answered and
//! taken from there by the processor. A provider's event ID is recorded once; a redelivery
//! finds it and is answered without being handed on again.

use rusqlite::{Connection, params};

use super::event::InboundEvent;
use super::store::StoreError;

/// Where an event is in its processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundState {
    /// Recorded, not yet processed.
    Pending = 0,
    /// Processed (or nothing to do).
    Done = 1,
    /// No workstream takes it under the current configuration; processed again when the
    /// configuration changes.
    Held = 2,
    /// Cannot be read back (a store written by a newer build); kept for a person to look at.
    Unreadable = 3,
}

/// What recording a webhook's events found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Events recorded now.
    pub new: usize,
    /// Events recorded before (redeliveries).
    pub duplicate: usize,
}

/// An event ready to record: its provider ID and its JSON. Made before the store job, so that
/// the single writer thread only binds strings.
#[derive(Debug)]
pub struct Serialized {
    id: String,
    json: String,
}

/// Serializes events for [`record`].
pub fn serialize(events: &[InboundEvent]) -> Result<Vec<Serialized>, StoreError> {
    events.iter().map(|e| Ok(Serialized { id: e.provider_event_id.clone(), json: serde_json::to_string(e)? })).collect()
}

/// Records events; the caller answers the webhook once the job has committed.
pub fn record(c: &Connection, events: &[Serialized], received_ms: i64) -> Result<Recorded, StoreError> {
    let mut stmt = c.prepare_cached("INSERT OR IGNORE INTO inbound (event_id, received_ms, event) VALUES (?1, ?2, ?3)")?;
    let mut recorded = Recorded::default();
    for event in events {
        if stmt.execute(params![event.id, received_ms, event.json])? == 1 {
            recorded.new += 1;
        } else {
            recorded.duplicate += 1;
        }
    }
    Ok(recorded)
}

/// Up to `limit` pending events in the order they were recorded. Rows that cannot be read are
/// marked [`InboundState::Unreadable`] on the way.
pub fn pending(c: &Connection, limit: usize) -> Result<Vec<(i64, InboundEvent)>, StoreError> {
    let mut stmt = c.prepare_cached("SELECT seq, event FROM inbound WHERE state = 0 ORDER BY seq LIMIT ?1")?;
    let rows = stmt.query_map([limit as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?.collect::<Result<Vec<_>, _>>()?;
    let mut events = Vec::with_capacity(rows.len());
    for (seq, json) in rows {
        match serde_json::from_str(&json) {
            Ok(event) => events.push((seq, event)),
            Err(e) => {
                tracing::error!(seq, error = %e, "a recorded event cannot be read; it is kept and skipped");
                mark(c, seq, InboundState::Unreadable)?;
            }
        }
    }
    Ok(events)
}

/// Sets an event's state.
pub fn mark(c: &Connection, seq: i64, state: InboundState) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE inbound SET state = ?2 WHERE seq = ?1")?.execute(params![seq, state as i64])?;
    Ok(())
}

/// Makes held events pending again (the configuration changed); returns how many.
pub fn release_held(c: &Connection) -> Result<usize, StoreError> {
    Ok(c.execute("UPDATE inbound SET state = 0 WHERE state = 2", [])?)
}

/// Forgets processed events recorded before `before_ms`; a redelivery older than that would be
/// taken as new. Returns how many were removed.
pub fn prune(c: &Connection, before_ms: i64) -> Result<usize, StoreError> {
    Ok(c.execute("DELETE FROM inbound WHERE state = 1 AND received_ms < ?1", [before_ms])?)
}
