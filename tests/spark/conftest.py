"""The Spark tier: tests run in the session-scoped `spark` fixture of tests/conftest.py (local[2], two shuffle
partitions, UI off, Delta on)."""
