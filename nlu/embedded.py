"""The embedded backend: jieba words + character n-grams, a calibrated linear model, in-process.

Trained from the Rasa YAML on first use (seconds) and cached on disk by the hash of that data.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlu.text import normalise, tokens
from nlu.training import DIALOGUE_INTENTS, KIND_INTENTS, TrainingData

MODEL_VERSION = "2"  # bump when features or model change, so cached models are rebuilt
log = logging.getLogger(__name__)


def _word_analyzer(text: str) -> list[str]:
    words = tokens(text)
    return words + [f"{a}_{b}" for a, b in zip(words, words[1:], strict=False)]


@dataclass
class Prediction:
    labels: list[str]
    probabilities: np.ndarray  # aligned with labels
    explanation: tuple[str, ...]


class LinearTextModel:
    """TF-IDF over words and character n-grams, a linear SVM, sigmoid-calibrated by cross-validation
    (a linear SVM trains in a fraction of a second here, where logistic regression took several)."""

    def __init__(self, texts: list[str], labels: list[str], *, calibrate: bool = True, c: float = 1.0) -> None:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion
        from sklearn.svm import LinearSVC

        self.features = FeatureUnion([
            ("words", TfidfVectorizer(analyzer=_word_analyzer, sublinear_tf=True, min_df=1)),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True, min_df=2,
                                      lowercase=True)),
        ])
        matrix = self.features.fit_transform([normalise(t) for t in texts])
        base = LinearSVC(C=c, class_weight="balanced")
        smallest = min(labels.count(label) for label in set(labels))
        if calibrate and smallest >= 3:
            self.classifier = CalibratedClassifierCV(base, method="sigmoid", cv=min(5, smallest), ensemble=False)
            self.classifier.fit(matrix, labels)
            self._linear = self.classifier.calibrated_classifiers_[0].estimator
        else:
            self.classifier = base.fit(matrix, labels)
            self._linear = base
            self.classifier.predict_proba = _softmax_scores(base)
        self.labels = [str(label) for label in self.classifier.classes_]
        self._names = self.features.get_feature_names_out()

    def predict(self, text: str, *, explain: bool = True, top_terms: int = 6) -> Prediction:
        vector = self.features.transform([text])
        probabilities = self.classifier.predict_proba(vector)[0]
        explanation: tuple[str, ...] = ()
        if explain:
            best = int(np.argmax(probabilities))
            explanation = self._explain(vector, [str(c) for c in self._linear.classes_].index(self.labels[best]), top_terms)
        return Prediction(self.labels, probabilities, explanation)

    def _explain(self, vector, class_index: int, top_terms: int) -> tuple[str, ...]:
        coef = self._linear.coef_
        row = coef[class_index] if coef.shape[0] > 1 else (coef[0] if class_index == 1 else -coef[0])
        present = vector.indices
        contributions = vector.data * row[present]
        order = np.argsort(-contributions)
        terms: list[str] = []
        for i in order:
            if contributions[i] <= 0 or len(terms) >= top_terms:
                break
            term = self._names[present[i]].split("__", 1)[1].strip()
            if term and term not in terms and not any(term in t for t in terms):
                terms.append(term.replace("_", ""))
        return tuple(terms)


def _softmax_scores(svm):
    """Uncalibrated stand-in for predict_proba (cross-validation only ranks, so a softmax will do)."""

    def predict_proba(matrix):
        scores = svm.decision_function(matrix)
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    return predict_proba


@dataclass
class EmbeddedModel:
    fingerprint: str
    intents: LinearTextModel  # categories, kind_* and dialogue intents together
    kinds: LinearTextModel | None  # kind_* intents only (None if the data has fewer than two)


def train(data: TrainingData, *, progress: bool = True) -> EmbeddedModel:
    from tqdm import tqdm

    steps = tqdm(total=2, desc="训练分类模型 training classifier", disable=None if progress else True, leave=False)
    intents = set(data.category_intents) | (DIALOGUE_INTENTS & set(data.examples)) | (set(KIND_INTENTS) & set(data.examples))
    texts, labels = data.texts_and_labels(intents)
    intent_model = LinearTextModel(texts, labels)
    steps.update()
    kind_texts, kind_labels = data.texts_and_labels(set(KIND_INTENTS) & set(data.examples))
    kind_model = LinearTextModel(kind_texts, kind_labels) if len(set(kind_labels)) >= 2 else None
    steps.update()
    steps.close()
    return EmbeddedModel(data.fingerprint, intent_model, kind_model)


def load_or_train(data: TrainingData, cache_dir: Path | None, *, progress: bool = True) -> EmbeddedModel:
    """The cached model for this training data, or a new one (saved when `cache_dir` is writable)."""
    import joblib

    if cache_dir is None:
        return train(data, progress=progress)
    path = cache_dir / f"embedded-v{MODEL_VERSION}-{data.fingerprint}.joblib"
    if path.exists():
        try:
            model = joblib.load(path)
            if isinstance(model, EmbeddedModel) and model.fingerprint == data.fingerprint:
                return model
        except Exception as exc:  # a damaged or incompatible cache file is rebuilt, not fatal
            log.warning("discarding cached NLU model %s: %s", path, exc)
    model = train(data, progress=progress)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".part", delete=False) as handle:
            joblib.dump(model, handle)
        os.replace(handle.name, path)
    except OSError as exc:
        log.warning("cannot cache the NLU model in %s: %s", cache_dir, exc)
    return model
