"""The HTTP API's routers, one per area; app.web.create_app assembles them."""
