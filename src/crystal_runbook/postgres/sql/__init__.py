"""SQL migrations of the PostgreSQL journal (package data; see ``engine.journal.migrations``)."""
