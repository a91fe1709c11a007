"""roomserver: realtime collaborative study rooms."""
