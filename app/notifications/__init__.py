"""The Discord outbox: a message per action waiting for approval, reminders and outcomes."""
