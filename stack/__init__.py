"""The composition layer: settings, the one loader (dataset, backbone, generator, adapter,
engine, ranker) and the conversion of dataset rows into the ranker's domain objects.
Uses candidate_gen and ranker; service/, training/ and the CLI build on it."""
