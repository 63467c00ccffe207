"""The fetcher: token, metadata, and the persistent GET loops that stream audio."""
