"""What app/ knows of the agents, and nothing more: the registry it is handed (registry.py), what a
run reports (report.py), and the SQL functions that record runs (sql.py). app/ never imports
agents/; scheduler.py, the composition root, hands the registry in."""
