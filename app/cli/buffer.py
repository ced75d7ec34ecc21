"""`opsdesk buffer ...`: connect Buffer through OAuth (the authorization link, then the code), list
the channels a `social.post` can name, and show the connection's state."""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

import typer
from rich.markup import escape
from rich.table import Table

from app.cli.context import console, database, errors, print_json

buffer_app = typer.Typer(help="Social posts through Buffer: connect, channels, status.", no_args_is_help=True)


def ask(question: str) -> str:
    """The code (or the whole address) the person pastes back; tests answer it themselves."""
    return str(typer.prompt(question))


def code_from(answer: str, state: str) -> str:
    """The authorization code from what was pasted: the address Buffer redirected to (its `state`
    checked, its `error` reported) or the bare code."""
    from app.core.errors import InvalidInput  # the error tree loads pydantic: not with `opsdesk --help`

    answer = answer.strip()
    if "://" not in answer and "?" not in answer:
        if not answer:
            raise InvalidInput("no code was given")
        return answer
    query = {key: values[0] for key, values in parse_qs(urlsplit(answer).query).items()}
    if "error" in query:
        raise InvalidInput(f"Buffer answered {query['error']}: {query.get('error_description', '')}".strip())
    if query.get("state") != state:
        raise InvalidInput("the address is not the answer to this link (its state differs): run connect again")
    if not query.get("code"):
        raise InvalidInput("the address carries no code")
    return query["code"]


@buffer_app.command("connect")
def connect() -> None:
    """Connect Buffer through its OAuth app client (BUFFER_CLIENT_ID): open the link, approve, then
    paste the address Buffer sent the browser to. The tokens are stored encrypted in the database."""
    from app.clients import Clients
    from app.clients.buffer import token_store
    from app.core.settings import Settings
    from integrations.buffer_oauth import BufferOAuth, Pkce, authorization_url

    with database() as (settings, db):
        if settings.buffer_api_key is not None:
            errors.print("[yellow]BUFFER_API_KEY is set: opsdesk uses the key, and needs no connection.[/yellow]")
            raise typer.Exit(1)
        config = settings.buffer_oauth_config(settings.public_base_url)
        store = token_store(db, settings)
        pkce, state = Pkce.new(), secrets.token_urlsafe(16)
        console.print("Open this link, approve opsdesk, then paste the address your browser lands on:")
        console.print(authorization_url(config, state=state, pkce=pkce), soft_wrap=True, markup=False)
        code = code_from(ask("Address (or code)"), state)
        oauth = BufferOAuth(config)
        try:
            pair = oauth.exchange_code(code, verifier=pkce.verifier)
        finally:
            oauth.close()
        if pair.refresh_token is None:
            errors.print("[yellow]Buffer gave no refresh token (offline_access): reconnect within the hour.[/yellow]")
        store.save(pair)
        clients = Clients(settings, db)
        try:
            channels = clients.get(Settings.buffer_client).channels()
        finally:
            clients.close()
    console.print(f"[green]Buffer connected[/green]: {len(channels)} channels (`opsdesk buffer channels`).")


@buffer_app.command("channels")
def channels(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """The channels of the Buffer organization: the ids a social.post names, and each text limit."""
    from app.clients import Clients
    from app.core.settings import Settings

    with database() as (settings, db):
        clients = Clients(settings, db)
        try:
            found = clients.get(Settings.buffer_client).channels()
        finally:
            clients.close()
    if as_json:
        print_json([{**c.model_dump(), "text_limit": c.text_limit(), "usable": c.usable} for c in found])
        return
    table = Table("id", "network", "name", "text limit", "state")
    for channel in found:
        state = "locked" if channel.is_locked else "disconnected" if channel.is_disconnected else "ok"
        if channel.is_queue_paused and state == "ok":
            state = "queue paused"
        limit = channel.text_limit()
        table.add_row(
            channel.id,
            escape(channel.network),
            escape(channel.display_name or channel.name),
            str(limit) if limit else "not stated by Buffer",
            state,
        )
    console.print(table)


@buffer_app.command("status")
def status() -> None:
    """Which credential Buffer calls use, and the stored OAuth connection's state (never a token)."""
    from app.clients.buffer import token_store

    with database() as (settings, db):
        grant = token_store(db, settings).status() if settings.buffer_token_key is not None else None
    print_json({"auth": settings.buffer_auth, "grant": grant})
