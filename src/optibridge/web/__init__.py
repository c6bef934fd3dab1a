"""The HTTP app: health now; listener, tracking, admin API and dashboard as they land."""
