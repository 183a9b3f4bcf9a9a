"""Stages: one `run(ctx)` per stage, composed by `goldsmith.jobs.pipeline`."""
