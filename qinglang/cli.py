"""The `qinglang` command line."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import click

from qinglang.errors import QinglangError

SHUTDOWN_SECONDS = 30.0  # SIGTERM: how long requests and updates in flight may take to finish

def _fail(message: str, code: int = 2) -> None:
    click.echo(f"qinglang: error: {message}", err=True)
    sys.exit(code)


def runs_async(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async command; a QinglangError becomes one line on stderr and exit code 2 (or its exit_code)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> None:
        try:
            asyncio.run(fn(*args, **kwargs))
        except QinglangError as exc:
            _fail(str(exc), getattr(exc, "exit_code", 2))
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


@contextlib.asynccontextmanager
async def _working_container(failure: str) -> AsyncIterator:
    """The container for one command, closed at the end; an unexpected error in the block becomes the one
    line `failure` with its reason in place of {reason} (a QinglangError passes as it is)."""
    container = await _container()
    try:
        yield container
    except QinglangError:
        raise
    except Exception as exc:
        raise QinglangError(failure.format(reason=_db_reason(exc))) from None
    finally:
        await container.close()


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
@click.option("--no-worker", is_flag=True, help="Leave notifications and scheduled jobs to `qinglang worker`.")
@click.option("--only", type=click.Choice(["bot", "web"]), default=None,
              help="Scale-out: serve only the Telegram bot (webhook or polling; with health and metrics) or only "
                   "the console, web chat and API. Implies --no-worker.")
def serve(host: str | None, port: int | None, no_migrate: bool, no_worker: bool, only: str | None) -> None:
    """Start the web service (health, console, web chat, API, bot) with the notifier and scheduler.

    SIGTERM stops it gracefully: /readyz answers 503, updates and requests in flight finish, then it exits."""
    from aiohttp import web

    from qinglang.worker import Worker
    from web.app import create_app
    from web.keys import METRICS

    settings = _settings()
    if only == "bot" and settings.bot.bot_token is None:
        _fail("--only bot needs QINGLANG_BOT_TOKEN")

    async def build():
        container = await _container()
        if not no_migrate:
            await _migrate(container)
        app = create_app(container, with_bot=only != "web", with_web=only != "bot")
        if not no_worker and only is None:
            Worker(container, counters=app[METRICS].worker_counters()).attach(app)
        return app

    try:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = loop.run_until_complete(build())
        _echo_data_key_location(settings)
        web.run_app(
            app,
            host=host or settings.web.host,
            port=port or settings.web.port,
            loop=loop,
            shutdown_timeout=SHUTDOWN_SECONDS,
            print=lambda message: click.echo(message.splitlines()[0]),
        )
    except QinglangError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot listen on {host or settings.web.host}:{port or settings.web.port}: {exc.strerror or exc}")


def _echo_data_key_location(settings) -> None:
    if settings.privacy.data_key is None:
        from qinglang.datakey import key_file_path

        click.echo(f"personal data is encrypted with the key in {key_file_path(settings.storage.data_dir)} "
                   "(QINGLANG_DATA_KEY is not set): back it up apart from the database", err=True)


@main.command()
@click.option("--port", type=int, default=None,
              help="Port of the worker's /healthz, /readyz and /metrics (default from QINGLANG_WORKER_PORT; 0: none).")
@runs_async
async def worker(port: int | None) -> None:
    """Deliver notifications and run the scheduled jobs (several may run on PostgreSQL)."""
    import signal

    from aiohttp import web

    from qinglang.worker import Worker
    from web.metrics import WorkerMetrics
    from web.worker_app import create_worker_app

    container = await _container()
    settings = container.settings
    port = settings.notify.worker_port if port is None else port
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in ("SIGINT", "SIGTERM"):
        loop.add_signal_handler(getattr(signal, name), stop.set)
    metrics = WorkerMetrics(container)
    http = web.AppRunner(create_worker_app(container, metrics, stop), access_log=None)
    try:
        if port:
            await http.setup()
            try:
                await web.TCPSite(http, settings.web.host, port).start()
            except OSError as exc:
                raise QinglangError(f"cannot listen on {settings.web.host}:{port}: {exc.strerror or exc} "
                                    "(QINGLANG_WORKER_PORT, or --port 0 for none)") from None
            click.echo(f"worker health and metrics on http://{settings.web.host}:{port}/metrics")
        runner = Worker(container, counters=metrics.counters)
        click.echo(f"worker {runner.notifier.worker_id} running; Ctrl+C stops it")
        await runner.run_until(stop)
    finally:
        await http.cleanup()
        await container.close()


@main.command()
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="A new or empty directory for the backup.")
@click.option("--with-key", is_flag=True,
              help="Also copy the data key file (then keep the backup as safe as the key itself).")
@runs_async
async def backup(out: Path, with_key: bool) -> None:
    """Copy the database and every evidence file into a new directory, checking each evidence hash.

    Exit code 0: complete; 1: written, but evidence files were missing or damaged (each named); 2: nothing written.
    """
    from qinglang.backup import BackupFailed, make_backup

    settings = _settings()
    report = await make_backup(settings, out, with_key=with_key)
    click.echo(f"backup written to {report.path}")
    _echo_contents(report.manifest)
    if report.manifest.data_key_ids and report.manifest.data_key_file is None:
        from qinglang.datakey import key_file_path

        click.echo(f"personal data is encrypted under data key {', '.join(report.manifest.data_key_ids)}: keep the key "
                   f"(QINGLANG_DATA_KEY or {key_file_path(settings.storage.data_dir)}) safe apart from this backup; "
                   "without it names, phones, stored messages and drafts cannot be read")
    for problem in report.manifest.problems:
        click.echo(f"qinglang: error: {problem.describe()}", err=True)
    if report.manifest.problems:
        raise BackupFailed(f"{len(report.manifest.problems)} evidence file(s) above are not in the backup; "
                           f"everything else is in {report.path}")


@main.command()
@click.option("--from", "source", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="A directory written by `qinglang backup`.")
@click.option("--force", is_flag=True, help="Replace a database that already holds data.")
@click.option("--check", is_flag=True, help="Only check the backup (manifest, every file's sha256); change nothing.")
@runs_async
async def restore(source: Path, force: bool, check: bool) -> None:
    """Check a backup, then put its database and evidence files back and compare the result with it.

    Exit code 0: restored and identical; 1: the restore or the comparison after it failed; 2: bad backup or
    refused (nothing changed).
    """
    from qinglang.backup import BackupFailed, check_backup, restore_backup

    if check:
        manifest = await asyncio.to_thread(check_backup, source)
        click.echo(f"backup {source.absolute()} is intact")
        _echo_contents(manifest)
        if manifest.problems:
            raise BackupFailed(f"the backup records {len(manifest.problems)} evidence file(s) that were missing or "
                               "damaged when it was made")
        return
    report = await restore_backup(_settings(), source, force=force)
    click.echo(f"restored {source.absolute()}")
    _echo_contents(report.manifest)
    click.echo(f"evidence files copied: {report.evidence_copied}, already in place: {report.evidence_present}")
    if report.key_installed:
        aside = f" (the key file there before is now {report.key_set_aside})" if report.key_set_aside else ""
        click.echo(f"data key file restored to {report.key_installed}{aside}")
    for problem in report.problems:
        click.echo(f"qinglang: error: {problem}", err=True)
    if report.problems:
        raise BackupFailed(f"the restored data differs from the backup in {len(report.problems)} point(s) above")


def _echo_contents(manifest) -> None:
    db = manifest.database
    rows = sum(db.row_counts.values())
    click.echo(f"made {manifest.created_at:%Y-%m-%d %H:%M:%S} UTC by qinglang {manifest.qinglang_version}")
    click.echo(f"database: {db.kind}, schema revision {db.alembic_revision}, {rows} rows in {len(db.row_counts)} "
               f"tables ({db.row_counts.get('cases', 0)} cases)")
    click.echo(f"evidence: {len(manifest.evidence)} files, {_size(sum(entry.size for entry in manifest.evidence))}")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.4g} {unit}"
        value /= 1000
    return f"{value:.4g} TB"


@main.command()
@click.option("--dry-run", is_flag=True, help="Only count what would be purged.")
@click.option("--before", "before", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Purge cases closed before this date (YYYY-MM-DD) instead of QINGLANG_RETENTION_DAYS ago.")
@runs_async
async def purge(dry_run: bool, before) -> None:
    """Erase the personal data of cases closed longer ago than the retention period (statistics stay)."""
    from intake.status import DomainError

    container = await _container()
    try:
        result = await container.retention.purge(before=before.date() if before else None, dry_run=dry_run)
    except DomainError as exc:
        _fail(str(exc))
    finally:
        await container.close()
    if result.cutoff is None:
        click.echo("no retention period is set (QINGLANG_RETENTION_DAYS) and no --before date given: nothing purged")
        return
    verb = "would purge" if dry_run else "purged"
    click.echo(f"{verb} the personal data of {result.cases} cases closed before {result.cutoff.isoformat()}: "
               f"{result.people} people erased ({result.people_kept} kept for an open or recent case), "
               f"{result.inbox} stored messages and {result.drafts} drafts deleted")


@main.command()
@runs_async
async def rekey() -> None:
    """Encrypt all personal data again with the current QINGLANG_DATA_KEY (after a key rotation; the old key
    stays in QINGLANG_OLD_DATA_KEYS until this has run): people, stored messages, drafts (also in Redis)."""
    from db.crypto import bound_cipher
    from db.drafts import reencrypt_redis_drafts
    from intake.rekey import reencrypt_personal_data

    container = await _container()
    try:
        cipher = bound_cipher(container.engine)
        done = await reencrypt_personal_data(container.uow, cipher)
        redis = container.settings.redis.redis_url
        in_redis = await reencrypt_redis_drafts(redis.get_secret_value(), cipher) if redis else 0
    finally:
        await container.close()
    click.echo(f"re-encrypted the personal data of {done.people} people, {done.inbox} stored messages and "
               f"{done.drafts + in_redis} drafts")


@main.group()
def evidence() -> None:
    """The evidence store."""


@evidence.command("sweep")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@runs_async
async def evidence_sweep(dry_run: bool) -> None:
    """Remove uploads no case and no draft refers to, older than QINGLANG_UNREFERENCED_GRACE_HOURS, and the
    leftovers of interrupted uploads (the worker does this daily)."""
    from intake.evidence_sweep import build_evidence_sweep

    async with _working_container("cannot sweep the evidence store: {reason}") as container:
        result = await build_evidence_sweep(container).run(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {result.files} unreferenced evidence files and {result.staff_copies} staff copies "
               f"({_size(result.bytes)}), and {result.incoming} leftovers of interrupted uploads "
               f"({_size(result.incoming_bytes)})")


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
    failure = "cannot create the user: {reason} (did you run `qinglang migrate`?)"
    async with _working_container(failure) as container:
        user = await container.accounts.create_user(
            username, unit, role, display_name=display_name, with_api_token=api_token
        )
    click.echo(f"created {user.username} ({user.role.value}, {user.unit_code})")
    click.echo(f"password: {user.password}")
    if user.api_token:
        click.echo(user.api_token)


@main.group()
def nlu() -> None:
    """Understanding complaint texts."""


def _nlu_backend(name: str | None):
    from qinglang.bootstrap import build_nlu

    return build_nlu(_settings(), backend=name)


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


@nlu.command("classify")
@click.argument("text")
@click.option("--backend", type=click.Choice(["embedded", "rasa"]), default=None)
@runs_async
async def nlu_classify(text: str, backend: str | None) -> None:
    """Classify TEXT and print the result as JSON."""
    import json

    from nlu.crisis import default_detector

    result = await _nlu_backend(backend).parse(text, now=_now())
    data = {**result.to_json(), "urgent": default_detector().is_crisis(text)}
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@nlu.command("evaluate")
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path), help="JSON lines with text and category and/or crisis (true/false).")
@click.option("--backend", type=click.Choice(["embedded", "rasa"]), default=None)
@click.option("--errors/--no-errors", default=False, help="Also list the misclassified lines.")
@runs_async
async def nlu_evaluate(data_path: Path, backend: str | None, errors: bool) -> None:
    """Accuracy, macro-F1, per-category scores and the confusion matrix (and crisis_recall / crisis_false
    for rows with `crisis`), as one JSON object."""
    import json

    from nlu.evaluate import evaluate, read_labelled

    rows = read_labelled(data_path)
    report = await evaluate(_nlu_backend(backend), rows, _now())
    if not errors:
        report.pop("errors")
    click.echo(json.dumps(report, ensure_ascii=False))


@nlu.command("crossval")
@click.option("--folds", type=click.IntRange(2, 20), default=5)
@runs_async
async def nlu_crossval(folds: int) -> None:
    """k-fold cross-validation of the embedded model on the training data."""
    import json

    from nlu.evaluate import crossval
    from nlu.training import default_training_data

    report = crossval(default_training_data(), folds=folds)
    click.echo(json.dumps(report, ensure_ascii=False))


@nlu.command("rasa-serve", context_settings={"ignore_unknown_options": True})
@click.option("--port", type=int, default=5005)
def nlu_rasa_serve(port: int) -> None:
    """Create the Rasa venv (Python 3.10), train if the data changed, and serve on 127.0.0.1."""
    import os

    script = Path(__file__).resolve().parents[1] / "scripts" / "rasa.sh"
    if not script.exists():
        _fail(f"{script} not found: rasa-serve runs from a source checkout")
    os.execv("/bin/bash", ["bash", str(script), "all", "--port", str(port)])


@main.group()
def report() -> None:
    """The statistics forms of the campaign (附件1 统计表, 附件2 月报表)."""


def _report_options(fn):
    fn = click.option("--unit", default=None, help="Reporting unit code (default: the whole bureau).")(fn)
    fn = click.option("--date", "report_date", type=click.DateTime(["%Y-%m-%d"]), default=None,
                      help="The form's date (default: today).")(fn)
    fn = click.option("--inputs", "inputs_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
                      help="YAML with the figures staff enter; stored for the period before export.")(fn)
    return click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False),
                        help="The .xlsx file to write.")(fn)


@report.command("monthly")
@click.option("--period", required=True, help="The month reported, YYYY-MM.")
@click.option("--override-reason", default=None,
              help="Export although the form breaks its logic rules; the reason is recorded.")
@_report_options
@runs_async
async def report_monthly(period: str, override_reason: str | None, unit: str | None, report_date, inputs_file,
                         out: Path) -> None:
    """附件2 月报表 for a month, filled from the cases and the entered figures."""
    from reports.inputs import parse_monthly_json
    from reports.service import RulesViolated

    async def export(container, scope, month, day):
        if inputs_file is not None:
            entered = parse_monthly_json(_read_inputs(inputs_file))
            await container.reports.inputs.save_monthly(month.key, scope.unit_code or "bureau", entered, None)
        try:
            return await container.reports.export_monthly(scope, month, None, day, override_reason)
        except RulesViolated as exc:
            lines = "\n".join(f"  {v.message}" for v in exc.violations)
            raise QinglangError(f"the form breaks its logic rules (fix them or give --override-reason):\n{lines}")

    await _write_report(export, period, unit, report_date, out)


@report.command("stats")
@click.option("--period", default=None, help="The month reported, YYYY-MM (default: this month).")
@_report_options
@runs_async
async def report_stats(period: str | None, unit: str | None, report_date, inputs_file, out: Path) -> None:
    """附件1 统计表, cumulative since the campaign began, filled from the cases and the entered figures."""
    from reports.inputs import parse_stats

    async def export(container, scope, month, day):
        if inputs_file is not None:
            entered = parse_stats(_read_inputs(inputs_file))
            await container.reports.inputs.save_stats(month.key, scope.unit_code or "bureau", entered, None)
        return await container.reports.export_stats(scope, month, None, day)

    await _write_report(export, period, unit, report_date, out)


async def _write_report(export, period: str | None, unit: str | None, report_date, out: Path) -> None:
    from reports.inputs import InputError
    from reports.period import Period, ReportScope

    container = await _container()
    try:
        if unit is not None and not container.directory.has_unit(unit):
            raise QinglangError(f"unknown unit {unit!r} (see `qinglang units list`)")
        try:
            month = Period.month(period or container.reports.today().strftime("%Y-%m"))
        except ValueError as exc:
            raise QinglangError(str(exc)) from None
        day = report_date.date() if report_date else None
        result = await export(container, ReportScope(unit), month, day)
    except InputError as exc:
        raise QinglangError("the entered figures are wrong: " + "; ".join(exc.texts())) from None
    finally:
        await container.close()
    try:
        out.write_bytes(result.content)
    except OSError as exc:
        raise QinglangError(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {out}")


def _read_inputs(path: Path) -> dict:
    from qinglang.yamlfile import load_yaml

    data = load_yaml(path).data
    if not isinstance(data, dict):
        raise QinglangError(f"{path}: expected a mapping of field names to values")
    return data


if __name__ == "__main__":
    main()
