"""The sink: bytes to disk, hashed as they land, published only when verified."""
