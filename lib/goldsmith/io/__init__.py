"""All storage I/O: the lakehouse catalog, landing files, Delta reads and writes, ops records."""
