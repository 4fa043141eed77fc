"""Pure ingest rules: normalisation, validation, identity keys and limits."""
