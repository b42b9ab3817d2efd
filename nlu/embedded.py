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

MODEL_VERSION = "3"  # bump when features or model change, so cached models are rebuilt
log = logging.getLogger(__name__)


def _word_analyzer(text: str) -> list[str]:
    words = tokens(text)
    return [*words, *(f"{a}_{b}" for a, b in zip(words, words[1:], strict=False))]


@dataclass
class Prediction:
    labels: list[str]
    probabilities: np.ndarray  # aligned with labels
    explanation: tuple[str, ...]


class LinearTextModel:
    """TF-IDF over words and character n-grams, a linear SVM, sigmoid-calibrated by cross-validation
    (a linear SVM trains in a fraction of a second here, where logistic regression took several).

    scikit-learn fits the model; prediction runs on plain arrays taken from the fitted parts, because
    scikit-learn's per-call input checks cost milliseconds on one short text. `sklearn_proba` keeps the
    library's own answer for comparison.
    """

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
        self.classifier = None
        if calibrate and smallest >= 3:
            self.classifier = CalibratedClassifierCV(base, method="sigmoid", cv=min(5, smallest), ensemble=False)
            self.classifier.fit(matrix, labels)
            calibrated = self.classifier.calibrated_classifiers_[0]
            linear = calibrated.estimator
            self._sigmoid = (np.array([k.a_ for k in calibrated.calibrators]), np.array([k.b_ for k in calibrated.calibrators]))
        else:
            linear = base.fit(matrix, labels)
            self._sigmoid = None  # cross-validation only ranks: a softmax of the margins will do
        if len(linear.classes_) < 3:
            raise ValueError("the text model needs at least three labels")
        self.labels = [str(label) for label in linear.classes_]
        self._coef = np.ascontiguousarray(linear.coef_.T)  # features x classes: rows picked per text
        self._intercept = linear.intercept_.copy()
        self._names = self.features.get_feature_names_out()
        self._analyzers = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_analyzers"] = None  # rebuilt on first use after loading
        return state

    def _vectorize(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Indices and tf-idf values of the text's features, each block L2-normalised like scikit-learn's."""
        if self._analyzers is None:
            offset, analyzers = 0, []
            for _, vectorizer in self.features.transformer_list:
                analyzers.append((vectorizer.build_analyzer(), vectorizer.vocabulary_, vectorizer.idf_, offset))
                offset += len(vectorizer.vocabulary_)
            self._analyzers = analyzers
        all_indices, all_values = [], []
        for analyze, vocabulary, idf, offset in self._analyzers:
            counts: dict[int, int] = {}
            for term in analyze(text):
                index = vocabulary.get(term)
                if index is not None:
                    counts[index] = counts.get(index, 0) + 1
            if not counts:
                continue
            indices = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            values = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * idf[indices]
            values /= np.sqrt(values @ values)
            all_indices.append(indices + offset)
            all_values.append(values)
        if not all_indices:
            return np.empty(0, dtype=np.int64), np.empty(0)
        return np.concatenate(all_indices), np.concatenate(all_values)

    def predict(self, text: str, *, explain: bool = True, top_terms: int = 6) -> Prediction:
        indices, values = self._vectorize(text)
        margins = values @ self._coef[indices] + self._intercept
        if self._sigmoid is not None:
            a, b = self._sigmoid
            probabilities = 1.0 / (1.0 + np.exp(a * margins + b))
            total = probabilities.sum()
            probabilities = probabilities / total if total > 0 else np.full_like(probabilities, 1 / len(probabilities))
        else:
            shifted = np.exp(margins - margins.max())
            probabilities = shifted / shifted.sum()
        explanation: tuple[str, ...] = ()
        if explain:
            explanation = self._explain(indices, values, int(np.argmax(probabilities)), top_terms)
        return Prediction(self.labels, probabilities, explanation)

    def sklearn_proba(self, text: str) -> np.ndarray:
        return self.classifier.predict_proba(self.features.transform([text]))[0]

    def _explain(self, indices: np.ndarray, values: np.ndarray, class_index: int, top_terms: int) -> tuple[str, ...]:
        contributions = values * self._coef[indices, class_index]
        terms: list[str] = []
        for i in np.argsort(-contributions):
            if contributions[i] <= 0 or len(terms) >= top_terms:
                break
            term = self._names[indices[i]].split("__", 1)[1].strip().replace("_", "")
            if term and not any(term in t for t in terms):
                terms.append(term)
        return tuple(terms)


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
