"""The floor of app/: settings, the database and its transports, errors, models, crontabs, the
cleaning of outside text. It imports nothing else of app/."""
