"""The notifier: tells the archival system, at least once, that a recording is safe."""
