"""Pure transforms: Column functions and DataFrame -> DataFrame functions. No I/O here."""
