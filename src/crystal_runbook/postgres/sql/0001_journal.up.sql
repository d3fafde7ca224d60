-- The journal: runs, their steps, their events, and the run locks of every machine that
-- shares this database. Same tables and columns as the SQLite journal's version 1, with
-- PostgreSQL types: times are timestamptz, documents are json (json, not jsonb, keeps the
-- order of keys as they were written), run ids compare byte-wise (COLLATE "C") so a prefix
-- of an id is an index range.
CREATE TABLE runs (
    id text COLLATE "C" PRIMARY KEY,
    runbook text NOT NULL,
    env text NOT NULL,
    service text,
    actor text NOT NULL,
    status text NOT NULL,
    params json NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz,
    error text,
    host text NOT NULL,
    pid integer NOT NULL,
    lock_key text,
    runbook_path text NOT NULL,
    runbook_digest text NOT NULL,
    runbook_text text NOT NULL,
    drill boolean NOT NULL DEFAULT false,
    meta json NOT NULL DEFAULT '{}'
);
CREATE INDEX runs_started ON runs (started_at DESC);
CREATE INDEX runs_service ON runs (service, started_at DESC);
CREATE TABLE steps (
    run_id text COLLATE "C" NOT NULL REFERENCES runs (id),
    phase text NOT NULL,
    idx integer NOT NULL,
    id text NOT NULL,
    uses text NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    changed boolean,
    summary text NOT NULL DEFAULT '',
    changes json NOT NULL DEFAULT '[]',
    resolved json NOT NULL DEFAULT '{}',
    outputs json NOT NULL DEFAULT '{}',
    evidence json NOT NULL DEFAULT '{}',
    error text,
    started_at timestamptz,
    ended_at timestamptz,
    PRIMARY KEY (run_id, phase, idx)
);
CREATE TABLE events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id text COLLATE "C" NOT NULL,
    step_id text,
    at timestamptz NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    message text NOT NULL,
    data json NOT NULL DEFAULT '{}'
);
CREATE INDEX events_run ON events (run_id, seq);
CREATE TABLE locks (
    key text PRIMARY KEY,
    run_id text NOT NULL,
    actor text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    acquired_at timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    ttl double precision NOT NULL
);
