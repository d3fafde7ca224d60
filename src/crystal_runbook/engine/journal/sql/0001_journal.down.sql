-- Back to an empty database: every run, step, event and lock is dropped.
DROP TABLE IF EXISTS locks;
DROP TABLE IF EXISTS events;
DROP TABLE IF EXISTS steps;
DROP TABLE IF EXISTS runs;
