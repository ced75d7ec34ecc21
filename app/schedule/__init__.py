"""The schedule: the jobs, each firing claimed once in the database, and APScheduler's wiring."""
