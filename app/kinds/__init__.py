"""The action kinds: each one's payload, the facts the policy must assume, and its handler; one
registry (app.kinds.registry). A handler reaches back to the core only through its context."""
