"""Backends behind one interface: `await backend.parse(text, now=...) -> NluResult`."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import numpy as np

from nlu.embedded import EmbeddedModel, load_or_train
from nlu.entities import EntityExtractor
from nlu.kind import decide_kind
from nlu.result import NluResult, Scored
from nlu.text import normalise, tokens
from nlu.training import KIND_INTENTS, TrainingData, default_training_data
from nlu.taxonomy import CATEGORY_IDS

log = logging.getLogger(__name__)
SHANGHAI = ZoneInfo("Asia/Shanghai")


class Backend(Protocol):
    name: str

    async def parse(self, text: str, *, now: datetime) -> NluResult: ...


class EmbeddedBackend:
    """In-process classifier; the default, and the fallback of the Rasa backend."""

    name = "embedded"

    def __init__(
        self,
        data: TrainingData | None = None,
        cache_dir: Path | None = None,
        tz: ZoneInfo = SHANGHAI,
        *,
        progress: bool = True,
    ) -> None:
        self._data = data
        self._cache_dir = cache_dir
        self._tz = tz
        self._progress = progress
        self._model: EmbeddedModel | None = None
        self._extractor: EntityExtractor | None = None

    @property
    def data(self) -> TrainingData:
        if self._data is None:
            self._data = default_training_data()
        return self._data

    def warm_up(self) -> None:
        if self._model is None:
            self._model = load_or_train(self.data, self._cache_dir, progress=self._progress)
            self._extractor = EntityExtractor(self.data)
            # jieba's dictionary and zhconv load on first use (about 2 s): not in the first citizen's request
            tokens(normalise("直播间买的衣服"))

    async def parse(self, text: str, *, now: datetime) -> NluResult:
        return self.classify(text, now=now)

    def classify(self, text: str, *, now: datetime) -> NluResult:
        self.warm_up()
        clean = normalise(text)
        prediction = self._model.intents.predict(clean)
        scores = dict(zip(prediction.labels, prediction.probabilities.tolist(), strict=True))
        intent = prediction.labels[int(np.argmax(prediction.probabilities))]
        return self.assemble(text, clean, intent, scores, prediction.explanation, now=now, backend=self.name)

    def kind_scores(self, clean: str) -> dict[str, float]:
        self.warm_up()
        if self._model.kinds is None:
            return {}
        prediction = self._model.kinds.predict(clean, explain=False)
        return {KIND_INTENTS[label]: p for label, p in zip(prediction.labels, prediction.probabilities.tolist(), strict=True)}

    def entities(self, clean: str, now: datetime):
        self.warm_up()
        return self._extractor.extract(clean, now.astimezone(self._tz).date())

    def assemble(self, original, clean, intent, scores, explanation, *, now, backend, fallback_reason=None) -> NluResult:
        """The shared part of every backend's result: category ranking, kind and entities."""
        category_scores = {label: p for label, p in scores.items() if label in CATEGORY_IDS}
        total = sum(category_scores.values()) or 1.0
        ranking = tuple(
            Scored(label, p / total) for label, p in sorted(category_scores.items(), key=lambda kv: -kv[1])
        )
        best = ranking[0] if ranking else None
        kind, kind_confidence = decide_kind(clean, self.kind_scores(clean))
        if intent in KIND_INTENTS and kind is None:
            kind, kind_confidence = KIND_INTENTS[intent], scores[intent]
        notes = ("text longer than the classified part",) if len(original) > len(clean) + 100 else ()
        return NluResult(
            text=clean,
            intent=intent,
            category=best.label if best else None,
            # a dialogue intent ("你好") is not a confident category, whatever the renormalised ranking says
            confidence=best.confidence * (1.0 if intent in CATEGORY_IDS else scores.get(best.label, 0.0)) if best else 0.0,
            ranking=ranking,
            kind=kind,
            kind_confidence=kind_confidence,
            entities=self.entities(clean, now),
            explanation=tuple(explanation),
            backend=backend,
            fallback_reason=fallback_reason,
            notes=notes,
        )


class RasaBackend:
    """A Rasa server's POST /model/parse; any error or timeout falls back to the embedded backend."""

    name = "rasa"

    def __init__(self, url: str, fallback: EmbeddedBackend, *, timeout: float = 3.0, session=None) -> None:
        self._url = url.rstrip("/") + "/model/parse"
        self._fallback = fallback
        self._timeout = timeout
        self._session = session
        self.fallbacks = 0

    def warm_up(self) -> None:
        self._fallback.warm_up()

    async def parse(self, text: str, *, now: datetime) -> NluResult:
        clean = normalise(text)  # bad input is the caller's error on every backend alike
        try:
            payload = await self._post(clean)
            ranking = payload.get("intent_ranking") or [payload["intent"]]
            scores = {item["name"]: float(item["confidence"]) for item in ranking if item.get("name")}
            intent = payload["intent"]["name"] or max(scores, key=scores.get)
            if intent == "nlu_fallback":
                intent = max(scores, key=scores.get)
        except Exception as exc:  # the server being down must never fail a conversation
            self.fallbacks += 1
            reason = f"rasa unavailable: {type(exc).__name__}: {exc}"[:200]
            log.warning("%s; using the embedded backend", reason)
            result = self._fallback.classify(text, now=now)
            return NluResult(**{**result.__dict__, "fallback_reason": reason})
        return self._fallback.assemble(text, clean, intent, scores, (), now=now, backend=self.name)

    async def _post(self, text: str) -> dict:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self._timeout)
        if self._session is not None:
            async with self._session.post(self._url, json={"text": text}, timeout=timeout) as response:
                response.raise_for_status()
                return await response.json()
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(self._url, json={"text": text}) as response:
                response.raise_for_status()
                return await response.json()


def run_sync(backend: Backend, text: str, now: datetime) -> NluResult:
    return asyncio.run(backend.parse(text, now=now))
