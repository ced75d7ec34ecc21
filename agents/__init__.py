"""The marketing, sales and support agents: gather context, ask Claude, propose actions."""
