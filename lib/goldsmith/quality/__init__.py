"""Data quality: expectations, deduplication rules and record accounting."""
