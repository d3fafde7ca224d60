-- Back to an empty database: every run, step, event and lock is dropped.
DROP TABLE locks;
DROP TABLE events;
DROP TABLE steps;
DROP TABLE runs;
