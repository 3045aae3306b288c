"""The backbone every stage uses: frames and their schema, streams (resume, shards, failures),
errors, model loading, shipped data files, tables."""
