"""The `qinglang` command line."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable

import click

from qinglang.errors import QinglangError


def _fail(message: str) -> None:
    click.echo(f"qinglang: error: {message}", err=True)
    sys.exit(2)


def runs_async(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async command; a QinglangError becomes one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> None:
        try:
            asyncio.run(fn(*args, **kwargs))
        except QinglangError as exc:
            _fail(str(exc))
        except OSError as exc:  # e.g. the database server refused the connection
            _fail(f"{exc.strerror or exc}")

    return wrapper


def _settings():
    from qinglang.settings import load_settings

    try:
        return load_settings()
    except QinglangError as exc:
        _fail(str(exc))


async def _container():
    from qinglang.bootstrap import build_container

    return build_container(_settings())


async def _migrate(container) -> None:
    from db import migrate
    from routing.sync import sync_units

    try:
        await migrate.upgrade(container.engine)
    except Exception as exc:
        raise QinglangError(f"cannot migrate the database: {_db_reason(exc)}") from None
    return await sync_units(container.uow, container.directory)


def _db_reason(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@click.group()
@click.version_option(package_name="qinglang")
def main() -> None:
    """清朗 Qinglang: complaints and tip-offs about live-stream shopping."""


@main.command()
@runs_async
async def migrate() -> None:
    """Create or upgrade the database schema and load the unit directory."""
    container = await _container()
    try:
        added, updated, deactivated = await _migrate(container)
    finally:
        await container.close()
    click.echo(f"database at head; units: {added} added, {updated} updated, {deactivated} deactivated")


@main.command()
@click.option("--host", default=None, help="Address to listen on (default from QINGLANG_HOST).")
@click.option("--port", type=int, default=None, help="Port (default from QINGLANG_PORT).")
@click.option("--no-migrate", is_flag=True, help="Do not upgrade the schema before starting.")
def serve(host: str | None, port: int | None, no_migrate: bool) -> None:
    """Start the web service (health, console, web chat, API)."""
    from aiohttp import web

    from web.app import create_app

    settings = _settings()

    async def build():
        container = await _container()
        if not no_migrate:
            await _migrate(container)
        return create_app(container)

    try:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = loop.run_until_complete(build())
        web.run_app(
            app,
            host=host or settings.web.host,
            port=port or settings.web.port,
            loop=loop,
            print=lambda message: click.echo(message.splitlines()[0]),
        )
    except QinglangError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot listen on {host or settings.web.host}:{port or settings.web.port}: {exc.strerror or exc}")


@main.group()
def units() -> None:
    """The bureau's units."""


@units.command("list")
@runs_async
async def units_list() -> None:
    """List units with their codes (from the unit directory file)."""
    from routing.directory import load_directory

    directory = load_directory(_settings().rules.units_file)
    for unit in directory.units:
        streets = "、".join(unit.streets)
        click.echo(f"{unit.code}\t{unit.name}\t{unit.type}" + (f"\t{streets}" if streets else ""))


@main.group()
def users() -> None:
    """Staff accounts."""


@users.command("create")
@click.argument("username")
@click.option("--unit", required=True, help="Unit code or Chinese name (see `qinglang units list`).")
@click.option("--role", required=True, help="admin, triage, handler or leader.")
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--api-token", is_flag=True, help="Also create an API token and print it alone on the last line.")
@runs_async
async def users_create(username: str, unit: str, role: str, display_name: str, api_token: bool) -> None:
    """Create a staff account; prints the generated password once."""
    container = await _container()
    try:
        user = await container.accounts.create_user(
            username, unit, role, display_name=display_name, with_api_token=api_token
        )
    except QinglangError:
        raise
    except Exception as exc:
        raise QinglangError(f"cannot create the user: {_db_reason(exc)} (did you run `qinglang migrate`?)") from None
    finally:
        await container.close()
    click.echo(f"created {user.username} ({user.role.value}, {user.unit_code})")
    click.echo(f"password: {user.password}")
    if user.api_token:
        click.echo(user.api_token)


if __name__ == "__main__":
    main()
