-- Delivery receipts. An outgoing message is found by the provider's ID of what was sent (one
-- Twilio message per outgoing message; the first of LINE's), and "delivered", which meant "the
-- provider accepted it", is now "accepted".
CREATE INDEX messages_by_provider_id ON messages (provider_id) WHERE direction = 'out';
UPDATE messages SET provider_id = json_extract(body, '$.providerMessageIds[0]') WHERE direction = 'out';
UPDATE messages SET body = json_set(body, '$.status', 'accepted') WHERE direction = 'out' AND json_extract(body, '$.status') = 'delivered';
-- Receipts that arrived before the send's answer recorded the message's provider ID, kept until
-- it is (or forgotten after a while: not every message on the number is the gateway's).
CREATE TABLE receipts (
    provider_id TEXT NOT NULL,
    status TEXT NOT NULL,
    receipt TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (provider_id, status)
);
CREATE INDEX receipts_by_age ON receipts (received_ms);
-- Receivers that answered 410 Gone: nothing is delivered to them until their settings change.
CREATE TABLE gone_endpoints (
    endpoint TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    gone_ms INTEGER NOT NULL
);
