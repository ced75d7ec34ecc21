"""Email through Brevo as opsdesk counts it: the daily quota, and campaigns sent in batches."""
