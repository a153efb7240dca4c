-- The schema as switchboard_schema version 1 recorded it before the migrations; its statements
-- create only what is missing, so a database of that time is adopted as it is.
CREATE TABLE IF NOT EXISTS switchboard_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS inbound (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    received_ms BIGINT NOT NULL,
    event TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS inbound_by_state ON inbound (state, seq);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    workstream TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    state TEXT NOT NULL,
    queue TEXT,
    data TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    last_customer_ms BIGINT NOT NULL,
    last_activity_ms BIGINT NOT NULL,
    closed_ms BIGINT,
    next_sequence BIGINT NOT NULL DEFAULT 1,
    reply_token TEXT,
    reply_until_ms BIGINT
);
CREATE UNIQUE INDEX IF NOT EXISTS conversations_open ON conversations (workstream, customer_id) WHERE state <> 'Closed';
CREATE INDEX IF NOT EXISTS conversations_by_customer ON conversations (workstream, customer_id, created_ms);
CREATE INDEX IF NOT EXISTS conversations_by_queue ON conversations (workstream, queue, state);
CREATE INDEX IF NOT EXISTS conversations_by_activity ON conversations (state, last_activity_ms);
CREATE TABLE IF NOT EXISTS messages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    provider_id TEXT,
    client_message_id TEXT,
    request_hash TEXT,
    body TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id, id);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id ON messages (conversation_id, client_message_id) WHERE client_message_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS outbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    workstream TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    target TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_by_conversation ON outbox (conversation_id, seq);
CREATE INDEX IF NOT EXISTS outbox_by_due ON outbox (next_attempt_ms);
CREATE TABLE IF NOT EXISTS sends (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    workstream TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sender TEXT,
    contents TEXT NOT NULL,
    retry_key TEXT NOT NULL,
    reply_token TEXT,
    reply_until_ms BIGINT,
    created_ms BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS sends_due ON sends (next_attempt_ms);
CREATE INDEX IF NOT EXISTS sends_by_conversation ON sends (conversation_id, seq);
CREATE TABLE IF NOT EXISTS profiles (
    customer_id TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    fetched_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    workstream TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (workstream, customer_id)
);
CREATE TABLE IF NOT EXISTS media (
    id TEXT PRIMARY KEY,
    workstream TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    bytes BYTEA NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS media_by_age ON media (created_ms);
