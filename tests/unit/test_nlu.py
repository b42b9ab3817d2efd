"""The embedded classifier: results, bad input, caching, explanation, and quality on held-out texts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nlu import embedded
from nlu.classifier import EmbeddedBackend
from nlu.evaluate import EvaluationDataError, crossval, evaluate, read_labelled
from nlu.taxonomy import CATEGORY_IDS
from nlu.text import NluInputError
from nlu.training import default_training_data, load_training_data

NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT.parent / "shared" / "data" / "dev.jsonl"
HOLDOUT = ROOT / "tests" / "data" / "nlu_holdout.jsonl"
DIALOGUE_HOLDOUT = ROOT / "tests" / "data" / "nlu_dialogue_holdout.jsonl"


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> EmbeddedBackend:
    backend = EmbeddedBackend(cache_dir=tmp_path_factory.mktemp("nlu"), progress=False)
    backend.warm_up()
    return backend


def test_training_data_covers_every_category_with_enough_examples():
    data = default_training_data()
    for category in CATEGORY_IDS:
        examples = data.examples[category]
        assert len(examples) >= 60, category
        assert len(set(examples)) == len(examples), f"duplicates in {category}"
    for intent in ("kind_complaint", "kind_tipoff", "kind_consultation", "greet", "status_query", "cancel", "help",
                   "out_of_scope"):
        assert len(data.examples[intent]) >= 20, intent


def test_result_shape(backend):
    result = backend.classify("直播间买的羽绒服七天无理由，商家拒绝退款，我要投诉", now=NOW)
    assert result.backend == "embedded"
    assert result.category == "consumer_rights"
    assert [s.label for s in result.ranking][0] == result.category
    assert set(s.label for s in result.ranking) == CATEGORY_IDS
    assert abs(sum(s.confidence for s in result.ranking) - 1.0) < 1e-6
    assert 0.0 < result.confidence <= 1.0
    assert result.kind == "complaint"
    assert json.loads(json.dumps(result.to_json(), ensure_ascii=False))["category"] == "consumer_rights"


def test_explanation_names_terms_of_the_text(backend):
    text = "主播说原价999今天秒杀99，我查了平时就卖99，虚假折扣"
    result = backend.classify(text, now=NOW)
    assert result.category == "price"
    assert result.explanation, "no explanation"
    assert all(term in result.text.lower() for term in result.explanation), result.explanation


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("我要举报这个主播卖假货，希望你们查处", "tipoff"),
        ("买的面膜过敏了，我要求退款赔偿", "complaint"),
        ("请问直播间买的东西不给退合法吗？", "consultation"),
    ],
)
def test_kind(backend, text, kind):
    assert backend.classify(text, now=NOW).kind == kind


@pytest.mark.parametrize(
    ("text", "intent"),
    [("你好，在吗", "greet"), ("我的投诉处理到哪一步了", "status_query"), ("算了不投诉了，撤回吧", "cancel")],
)
def test_dialogue_intents(backend, text, intent):
    result = backend.classify(text, now=NOW)
    assert result.intent == intent
    assert result.needs_choice(0.45)  # a greeting is no confident category


@pytest.mark.parametrize("text", ["", "   \n\t ", "😀😡👍", "？？？！！。。。", "\x00\x01\x02", "——……"])
def test_text_without_words_is_a_clear_error(backend, text):
    with pytest.raises(NluInputError, match="请用文字描述"):
        backend.classify(text, now=NOW)


def test_very_long_text_is_classified_from_its_start(backend):
    text = "我在直播间买的奶粉过期了，生产日期是假的。" + "啊" * 50_000
    result = backend.classify(text, now=NOW)
    assert result.category == "food_safety"
    assert "text longer than the classified part" in result.notes


def test_control_characters_and_mixed_scripts(backend):
    result = backend.classify("我在dy买了iPhone15 pro\x07花了5999元\u200b结果是翻新机冒充新机", now=NOW)
    assert result.category in CATEGORY_IDS
    assert result.entities.platform == "抖音"
    assert result.entities.amount_fen == 599900


def test_traditional_characters_are_understood_like_simplified(backend):
    simplified = backend.classify("直播间买的奶粉已经过期了，还是三无产品", now=NOW)
    traditional = backend.classify("直播間買的奶粉已經過期了，還是三無產品", now=NOW)
    assert traditional.category == simplified.category == "food_safety"
    assert traditional.text == simplified.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_any_unicode_gives_a_result_or_a_clear_error(backend, text):
    try:
        result = backend.classify(text, now=NOW)
    except NluInputError:
        return
    assert result.category in CATEGORY_IDS
    assert 0.0 <= result.confidence <= 1.0
    assert result.kind in (None, "complaint", "tipoff", "consultation")


def test_model_is_cached_by_data_hash(tmp_path, monkeypatch):
    data = default_training_data()
    first = embedded.load_or_train(data, tmp_path, progress=False)
    cached = list(tmp_path.glob("*.joblib"))
    assert len(cached) == 1 and data.fingerprint in cached[0].name

    def refuse(*args, **kwargs):
        raise AssertionError("retrained although the data did not change")

    monkeypatch.setattr(embedded, "train", refuse)
    again = embedded.load_or_train(data, tmp_path, progress=False)
    assert again.fingerprint == first.fingerprint


def test_changed_data_gets_a_new_fingerprint(tmp_path):
    source = ROOT / "nlu" / "rasa" / "data"
    copy = tmp_path / "data"
    copy.mkdir()
    for path in source.rglob("*.yml"):
        target = copy / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    before = load_training_data(copy).fingerprint
    with (copy / "kinds.yml").open("a", encoding="utf-8") as handle:
        handle.write("\n- intent: kind_complaint\n  examples: |\n    - 必须给我退钱\n")
    after = load_training_data(copy)
    assert after.fingerprint != before
    assert "必须给我退钱" in after.examples["kind_complaint"]


def test_damaged_cache_file_is_rebuilt(tmp_path):
    data = default_training_data()
    path = tmp_path / f"embedded-v{embedded.MODEL_VERSION}-{data.fingerprint}.joblib"
    path.write_bytes(b"not a model")
    model = embedded.load_or_train(data, tmp_path, progress=False)
    assert model.fingerprint == data.fingerprint
    assert path.stat().st_size > 1000


# -- evaluation -----------------------------------------------------------------------------------


async def test_dev_set_quality(backend):
    """Real texts of regulators and reporters (a different voice from the training data)."""
    report = await evaluate(backend, read_labelled(DEV), NOW)
    assert report["accuracy"] >= 0.80, report["errors"]
    assert report["macro_f1"] >= 0.75, report["errors"]


async def test_holdout_quality(backend):
    """Texts written apart from the training data, in consumer, formal and case-summary voices."""
    report = await evaluate(backend, read_labelled(HOLDOUT), NOW)
    assert report["accuracy"] >= 0.80, report["errors"][:20]
    assert report["macro_f1"] >= 0.80


def test_dialogue_holdout(backend):
    rows = [json.loads(line) for line in DIALOGUE_HOLDOUT.read_text(encoding="utf-8").splitlines() if line.strip()]
    right = sum(backend.classify(r["text"], now=NOW).intent == r["intent"] for r in rows)
    assert right / len(rows) >= 0.8


def test_crossval_report():
    report = crossval(default_training_data(), folds=3)
    assert len(report["folds"]) == 3
    assert report["accuracy"] >= 0.7
    assert set(report["per_category"]) >= CATEGORY_IDS


def test_evaluation_metrics_are_exact():
    from nlu.evaluate import metrics

    report = metrics(["price", "price", "tax", "other"], ["price", "tax", "tax", None])
    assert report["accuracy"] == 0.5
    assert report["per_category"]["price"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert report["per_category"]["tax"]["precision"] == 0.5
    assert report["macro_f1"] == 0.4444  # over the gold categories: (2/3 + 2/3 + 0) / 3
    labels = report["confusion"]["labels"]
    assert report["confusion"]["matrix"][labels.index("price")][labels.index("tax")] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "x", "category": "price"}\n{"text": "y", "category": "gossip"}\n', "data.jsonl:2: unknown category 'gossip'"),
        ('{"text": "x"}\n', "data.jsonl:1: needs a JSON object with 'text' and 'category'"),
        ("not json\n", "data.jsonl:1: not JSON"),
        ("\n\n", "no labelled lines"),
    ],
)
def test_bad_evaluation_file(tmp_path, content, message):
    path = tmp_path / "data.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EvaluationDataError, match=message):
        read_labelled(path)
