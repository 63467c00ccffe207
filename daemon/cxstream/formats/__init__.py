"""Container formats the archive writes or checks: Ogg pages and RIFF/WAVE."""
