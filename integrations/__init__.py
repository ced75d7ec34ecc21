"""One module per outside system; nothing else imports an SDK directly.

This package is the floor: it imports nothing from app/, agents/ or scheduler.py
(tests/test_integrations_floor.py checks it). Each client takes its own typed config, raises from
`errors`, and gets what must be shared between processes (Claude's spend ledger and model cache,
HubSpot's rate slots) as a small interface the app implements and hands in.
"""
