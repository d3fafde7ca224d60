-- `runs --limit N --before RUN_ID` pages by the key (started_at, id), newest first: both
-- orderings get an index that ends in id, so a page is an index range scan with no sort,
-- however many runs the journal holds.
DROP INDEX runs_started;
DROP INDEX runs_service;
CREATE INDEX runs_newest ON runs (started_at DESC, id DESC);
CREATE INDEX runs_service_newest ON runs (service, started_at DESC, id DESC);
