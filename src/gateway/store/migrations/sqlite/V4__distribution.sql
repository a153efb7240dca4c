-- Work distribution: agents as the desk reports them, which conversations take whose capacity
-- until when, and which wait in a queue at what priority rank (mirrors of the conversation's
-- agent, hold and rank, for the queries); the waits recent assignments ended, per queue.
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    reported_ms INTEGER NOT NULL
);
ALTER TABLE conversations ADD COLUMN agent_id TEXT;
ALTER TABLE conversations ADD COLUMN held_until_ms INTEGER;
UPDATE conversations SET agent_id = json_extract(data, '$.agent.id');
CREATE INDEX conversations_by_agent ON conversations (agent_id, held_until_ms) WHERE agent_id IS NOT NULL;
ALTER TABLE conversations ADD COLUMN waiting_rank INTEGER;
UPDATE conversations SET waiting_rank = CASE json_extract(data, '$.routing.priority') WHEN 'Urgent' THEN 0 WHEN 'High' THEN 1 WHEN 'Low' THEN 3 ELSE 2 END
    WHERE state = 'Open' AND queue IS NOT NULL AND coalesce(json_extract(data, '$.handler'), 'desk') = 'desk';
CREATE INDEX conversations_waiting ON conversations (workstream, queue, waiting_rank, created_ms, id) WHERE waiting_rank IS NOT NULL;
CREATE TABLE queue_waits (
    workstream TEXT NOT NULL,
    queue TEXT NOT NULL,
    assigned_ms INTEGER NOT NULL,
    wait_ms INTEGER NOT NULL
);
CREATE INDEX queue_waits_by_queue ON queue_waits (workstream, queue, assigned_ms);
