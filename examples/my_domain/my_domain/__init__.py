"""The design notes' example domain: one API, two ways to ingest it."""
