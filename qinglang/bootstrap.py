"""Wiring: build every dependency from settings, in one place, on demand (never at import time)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from db.crypto import bind_cipher
from db.engine import create_engine, create_session_factory
from db.uow import UnitOfWorkFactory
from intake.cases import CaseService
from intake.conversation import ConversationEngine
from intake.clock import Clock, SystemClock
from intake.deadlines import DeadlinePolicy, load_policy
from intake.evidence import EvidenceLimits, EvidenceStore
from intake.images import ImageLimits
from intake.retention import RetentionService
from qinglang.datakey import load_cipher
from qinglang.errors import ConfigError
from qinglang.settings import Settings
from reports.service import ReportService
from routing.directory import UnitDirectory, load_directory
from routing.rules import RoutingTable, active_rules_path, load_rules
from nlu.classifier import Backend
from web.accounts import AccountService


@dataclass
class Container:
    settings: Settings
    engine: AsyncEngine
    uow: UnitOfWorkFactory
    clock: Clock
    directory: UnitDirectory
    routing: RoutingTable
    policy: DeadlinePolicy
    evidence: EvidenceStore
    cases: CaseService = field(init=False)
    accounts: AccountService = field(init=False)
    nlu: Backend = field(init=False)
    conversation: ConversationEngine = field(init=False)
    reports: ReportService = field(init=False)
    retention: RetentionService = field(init=False)

    def __post_init__(self) -> None:
        self.cases = CaseService(
            self.uow, self.routing, self.policy, self.clock, self.settings.tz, self.settings.rules.case_number_prefix,
            duty_unit=self.settings.notify.escalation_unit,
        )
        self.accounts = AccountService(self.uow, self.clock)
        self.reports = ReportService(self.uow, self.clock, self.settings.tz, self.settings.reports.campaign_start,
                                     self.directory)
        self.retention = RetentionService(self.uow, self.clock, self.settings.tz, self.settings.privacy.retention)
        self.nlu = build_nlu(self.settings, progress=False)
        self.conversation = ConversationEngine(
            self.nlu, self.cases, self.directory, self.settings.tz,
            confidence_threshold=self.settings.nlu.nlu_confidence_threshold,
        )

    async def close(self) -> None:
        await self.engine.dispose()


def load_rules_files(settings: Settings) -> tuple[UnitDirectory, RoutingTable, DeadlinePolicy]:
    """Load and validate the administrator-edited data files; errors name file and line."""
    directory = load_directory(settings.rules.units_file)
    # without a configured file, the rules last saved from the console (data dir) win over the packaged ones
    routing = load_rules(active_rules_path(settings.rules.routing_file, settings.storage.data_dir), directory)
    policy = load_policy(settings.rules.deadlines_file)
    return directory, routing, policy


def ensure_data_dir(path: Path) -> Path:
    """Create the data directory and prove it is writable, or say what to fix in one line."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"data directory {path} is not usable ({reason}); set QINGLANG_DATA_DIR to a writable directory"
        ) from None
    return path


def build_nlu(settings: Settings, *, backend: str | None = None, progress: bool = True):
    """The configured classifier: embedded, or Rasa with the embedded one as its fallback."""
    from nlu.classifier import EmbeddedBackend, RasaBackend

    cache_dir = settings.nlu.nlu_cache_dir or settings.storage.data_dir / "nlu"
    embedded = EmbeddedBackend(cache_dir=cache_dir, tz=settings.tz, progress=progress)
    chosen = backend or settings.nlu.nlu_backend
    if chosen == "embedded":
        return embedded
    if chosen == "rasa":
        if not settings.nlu.rasa_url:
            raise ConfigError("the rasa backend needs QINGLANG_RASA_URL (for example http://127.0.0.1:5005)")
        return RasaBackend(settings.nlu.rasa_url, embedded, timeout=settings.nlu.rasa_timeout)
    raise ConfigError(f"unknown NLU backend {chosen!r}; use embedded or rasa")


def build_container(settings: Settings, *, clock: Clock | None = None) -> Container:
    directory, routing, policy = load_rules_files(settings)
    data_dir = ensure_data_dir(settings.storage.data_dir)
    cipher = load_cipher(settings.privacy, data_dir)
    engine = create_engine(settings.database_url, echo=settings.database.database_echo)
    # personal data columns encrypt with the cipher of their engine; an engine without one refuses them
    bind_cipher(engine, cipher)
    storage = settings.storage
    images = ImageLimits(max_pixels=storage.max_image_pixels, max_side=storage.max_image_side,
                         max_frames=storage.max_image_frames,
                         max_total_pixels=max(storage.max_image_pixels, ImageLimits.max_total_pixels))
    evidence = EvidenceStore(data_dir / "evidence", EvidenceLimits(max_bytes=storage.max_evidence_bytes, images=images))
    return Container(
        settings=settings,
        engine=engine,
        uow=UnitOfWorkFactory(create_session_factory(engine)),
        clock=clock or SystemClock(),
        directory=directory,
        routing=routing,
        policy=policy,
        evidence=evidence,
    )
