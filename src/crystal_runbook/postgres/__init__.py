"""The journal and the run locks on PostgreSQL, for a team or several `serve` replicas.

Chosen by the composition root (``service.workspace``) when ``CRYSTAL_DATABASE_URL`` is set;
the embedded SQLite journal stays the default. This adapter is the only place that imports
psycopg for the journal: the engine defines the ``Journal`` and lock protocols, this
package implements them, and psycopg's errors become ``errors.ConfigurationError`` here.

- ``conninfo``: the database URL is a secret; ``masked`` is the only form ever printed.
- ``database``: one connection pool per process, and the error translation.
- ``schema``: the migrations store (`crystal-runbook db upgrade|downgrade|status`).
- ``journal``: ``PostgresJournal``, the ``Journal`` protocol.
- ``locks``: ``PostgresLocks``, lock rows with a heartbeat, timed by the server's clock.

Importing this package imports nothing heavy; its modules import psycopg.
"""
