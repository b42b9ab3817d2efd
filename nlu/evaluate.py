"""Evaluation of a backend on labelled texts, and cross-validation on the training data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nlu.classifier import Backend
from nlu.taxonomy import CATEGORY_IDS
from nlu.training import TrainingData
from qinglang.errors import QinglangError


class EvaluationDataError(QinglangError):
    pass


@dataclass(frozen=True)
class LabelledText:
    text: str
    category: str | None  # None: a row that only says whether the text is a crisis
    line: int
    crisis: bool | None = None


def read_labelled(path: Path) -> list[LabelledText]:
    """Lines of JSON with `text` and `category` and/or `crisis` (true/false); a bad line is an error naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvaluationDataError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise EvaluationDataError(f"{path}: not UTF-8 text") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvaluationDataError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if (not isinstance(item, dict) or not isinstance(item.get("text"), str)
                or ("category" not in item and "crisis" not in item)):
            raise EvaluationDataError(f"{path}:{number}: needs a JSON object with 'text' and 'category' (or 'crisis')")
        if "category" in item and item["category"] not in CATEGORY_IDS:
            raise EvaluationDataError(
                f"{path}:{number}: unknown category {item['category']!r}; one of: {', '.join(sorted(CATEGORY_IDS))}"
            )
        if "crisis" in item and not isinstance(item["crisis"], bool):
            raise EvaluationDataError(f"{path}:{number}: 'crisis' must be true or false")
        rows.append(LabelledText(item["text"], item.get("category"), number, item.get("crisis")))
    if not rows:
        raise EvaluationDataError(f"{path}: no labelled lines")
    return rows


def metrics(gold: list[str], predicted: list[str | None]) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    predicted = [p or "none" for p in predicted]
    labels = sorted(set(gold) | set(predicted))
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, predicted, labels=labels, zero_division=0
    )
    in_gold = [i for i, label in enumerate(labels) if label in set(gold)]
    return {
        "n": len(gold),
        "accuracy": round(sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold), 4),
        # macro over the categories present in the data: a category the file has no example of
        # cannot be scored fairly
        "macro_f1": round(float(sum(f1[i] for i in in_gold) / len(in_gold)), 4),
        "per_category": {
            label: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion": {"labels": labels, "matrix": confusion_matrix(gold, predicted, labels=labels).tolist()},
    }


async def evaluate(backend: Backend, rows: list[LabelledText], now: datetime) -> dict[str, Any]:
    """Category scores over the rows with a category; crisis scores over the rows with `crisis`."""
    predicted = []
    errors = []
    categorised = [row for row in rows if row.category is not None]
    for row in categorised:
        result = await backend.parse(row.text, now=now)
        predicted.append(result.category)
        if result.category != row.category:
            errors.append({"line": row.line, "gold": row.category, "predicted": result.category,
                           "confidence": round(result.confidence, 3), "text": row.text[:60]})
    report: dict[str, Any] = metrics([r.category for r in categorised], predicted) if categorised else {"n": 0}
    report["backend"] = backend.name
    crisis_rows = [row for row in rows if row.crisis is not None]
    if crisis_rows:
        report.update(crisis_metrics(crisis_rows, errors))
    report["errors"] = errors
    return report


def crisis_metrics(rows: list[LabelledText], errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Recall on the crisis rows and the share of false alarms on the others (None when there are none)."""
    from nlu.crisis import default_detector

    detector = default_detector()
    positives = negatives = found = false_alarms = 0
    for row in rows:
        flagged = detector.is_crisis(row.text)
        positives += row.crisis
        negatives += not row.crisis
        found += row.crisis and flagged
        false_alarms += flagged and not row.crisis
        if flagged != row.crisis and errors is not None:
            errors.append({"line": row.line, "gold_crisis": row.crisis, "predicted_crisis": flagged,
                           "text": row.text[:60]})
    return {
        "crisis_n": len(rows),
        "crisis_recall": round(found / positives, 4) if positives else None,
        "crisis_false": round(false_alarms / negatives, 4) if negatives else None,
    }


def crossval(data: TrainingData, folds: int = 5, seed: int = 13) -> dict[str, Any]:
    """Stratified k-fold over the category examples; other intents always stay in training."""
    from sklearn.model_selection import StratifiedKFold

    from nlu.embedded import LinearTextModel
    from nlu.text import normalise

    texts, labels = data.texts_and_labels(data.category_intents)
    others_texts, others_labels = data.texts_and_labels(set(data.examples) - data.category_intents)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    gold: list[str] = []
    predicted: list[str] = []
    per_fold = []
    for train_index, test_index in splitter.split(texts, labels):
        model = LinearTextModel(
            [texts[i] for i in train_index] + others_texts, [labels[i] for i in train_index] + others_labels,
            calibrate=False,
        )
        fold_gold, fold_predicted = [], []
        for i in test_index:
            prediction = model.predict(normalise(texts[i]), explain=False)
            ranked = sorted(zip(prediction.labels, prediction.probabilities, strict=True), key=lambda kv: -kv[1])
            fold_predicted.append(next(label for label, _ in ranked if label in CATEGORY_IDS))
            fold_gold.append(labels[i])
        fold = metrics(fold_gold, fold_predicted)
        per_fold.append({"accuracy": fold["accuracy"], "macro_f1": fold["macro_f1"]})
        gold += fold_gold
        predicted += fold_predicted
    report = metrics(gold, predicted)
    report["folds"] = per_fold
    return report
