"""The daily report: built from the database, drawn as a chart and a page, delivered to Discord."""
