"""One result type for every backend."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any


@dataclass(frozen=True)
class Entities:
    platform: str | None = None  # canonical name, e.g. 抖音
    live_room: str | None = None
    streamer: str | None = None
    shop: str | None = None
    product: str | None = None
    amount_fen: int | None = None  # yuan x 100
    order_number: str | None = None
    phone: str | None = None
    purchase_date: date | None = None

    def found(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Scored:
    label: str
    confidence: float


@dataclass(frozen=True)
class NluResult:
    text: str
    intent: str  # a category id, a dialogue intent (greet, status_query, ...) or a kind_* intent
    category: str | None  # the best violation category (always given for non-empty text)
    confidence: float  # of `category`
    ranking: tuple[Scored, ...]  # categories, best first
    kind: str | None  # complaint | tipoff | consultation; None when the text does not say
    kind_confidence: float
    entities: Entities
    explanation: tuple[str, ...]  # the terms that weighed most for `category`
    backend: str  # embedded | rasa
    fallback_reason: str | None = None  # set when Rasa failed and the embedded backend answered
    notes: tuple[str, ...] = field(default=())

    def needs_choice(self, threshold: float) -> bool:
        """True when the bot should ask the person to pick the category."""
        return self.category is None or self.confidence < threshold

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["entities"] = {
            k: (v.isoformat() if isinstance(v, date) else v) for k, v in self.entities.found().items()
        }
        data["ranking"] = [{"category": s.label, "confidence": round(s.confidence, 4)} for s in self.ranking]
        data["confidence"] = round(self.confidence, 4)
        data["kind_confidence"] = round(self.kind_confidence, 4)
        data["explanation"] = list(self.explanation)
        data["notes"] = list(self.notes)
        return data
