"""Running opsdesk: opening the database with its start-up checks, and the service's threads."""
