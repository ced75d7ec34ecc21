"""One module per outside system; nothing else imports an SDK directly."""
