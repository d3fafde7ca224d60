"""SQL migrations of the embedded SQLite journal (package data; see ``migrations``)."""
