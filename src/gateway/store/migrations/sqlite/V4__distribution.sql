-- Work distribution: agents as the desk reports them, and which conversations take whose
-- capacity until when (mirrors of the conversation's agent and hold, for the queries).
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    reported_ms INTEGER NOT NULL
);
ALTER TABLE conversations ADD COLUMN agent_id TEXT;
ALTER TABLE conversations ADD COLUMN held_until_ms INTEGER;
UPDATE conversations SET agent_id = json_extract(data, '$.agent.id');
CREATE INDEX conversations_by_agent ON conversations (agent_id, held_until_ms) WHERE agent_id IS NOT NULL;
