"""Incident documents and drill reports, generated only from the journal.

After a rollback the on-call still owes a write-up; this package writes it from what the
journal recorded: the trigger's evidence, every transition with its UTC time, what changed,
the source checklist's verification items, durations against the five-minute target and the
post-launch review fields. One module per job:

- ``model``: the document as plain values (what the JSON carries, what templates read);
- ``facts``: small readings of journal records that several parts share;
- ``verification``: the checklist's "Rollback Verification" items;
- ``review``: durations, the post-launch review fields and the user-impact estimate;
- ``build``: journal records -> ``model.Document`` (title, status, timeline, changes, ...);
- ``chart``: the PNG of the trigger metric, drawn by ``plot`` (Pillow, imported only there);
- ``markdown``: Markdown from a Jinja2 template; ``files``: names, writing, idempotency;
- ``generate``: the one entry point used by `incident.write` and `incident show`.
"""
