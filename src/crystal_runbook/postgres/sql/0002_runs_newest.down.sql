DROP INDEX runs_newest;
DROP INDEX runs_service_newest;
CREATE INDEX runs_started ON runs (started_at DESC);
CREATE INDEX runs_service ON runs (service, started_at DESC);
