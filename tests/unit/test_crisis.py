"""The crisis detector (nlu/crisis.py) on the labelled set, its exclusions, and its word list's checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nlu.crisis import DEFAULT_CRISIS_PATH, CrisisDetector, CrisisListError, Group, default_detector
from nlu.evaluate import EvaluationDataError, evaluate, read_labelled

CRISIS_SET = Path(__file__).resolve().parents[1] / "data" / "nlu_crisis.jsonl"
ISSUE_MESSAGE = "我在直播间买的保健品吃了没用，钱也要不回来，我现在真的不想活了"
QUOTED_CATCHPHRASE = "主播说‘不想活了’是口头禅"


def test_labelled_set_recall_and_false_alarms():
    rows = [json.loads(line) for line in CRISIS_SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    positives = [r["text"] for r in rows if r["crisis"]]
    negatives = [r["text"] for r in rows if not r["crisis"]]
    assert len(positives) >= 60 and len(negatives) >= 120
    detector = default_detector()
    missed = [t for t in positives if not detector.is_crisis(t)]
    false_alarms = [t for t in negatives if detector.is_crisis(t)]
    recall = 1 - len(missed) / len(positives)
    false_rate = len(false_alarms) / len(negatives)
    print(f"crisis recall {recall:.4f} ({len(positives) - len(missed)}/{len(positives)}), "
          f"false alarms {false_rate:.4f} ({len(false_alarms)}/{len(negatives)})")
    assert recall >= 0.95, missed
    assert false_rate <= 0.02, false_alarms


@pytest.mark.parametrize(("text", "group"), [
    (ISSUE_MESSAGE, Group.SELF_HARM),
    ("再不退钱我就跟老板同归于尽", Group.VIOLENCE),
    ("我要在他们的货里投毒", Group.VIOLENCE),
    ("我们几十个受害者准备集体上访", Group.MASS_INCIDENT),
    ("If they keep ignoring me I will KILL MYSELF", Group.SELF_HARM),
    ("我跟客服说“再不退款我就去跳楼”", Group.SELF_HARM),  # the person's own words in quotes
    ("商家威胁说“再投诉就弄死你”", Group.VIOLENCE),  # a threat against the person, quoted
    ("別逼我跳樓", Group.SELF_HARM),  # traditional characters
])
def test_signals(text, group):
    signal = default_detector().detect(text)
    assert signal is not None and signal.group == group


@pytest.mark.parametrize("text", [
    QUOTED_CATCHPHRASE,
    "主播喊着“不卖了不活了”，其实是演戏",
    "哈哈，贵得我都不想活了，开玩笑的",
    "我不会想不开的，只想退款",
    "我没想自杀，只是很委屈",
    "直播间打出跳楼价，结果比超市还贵",
    "他们搞自杀式降价，发的都是次品",
    "这个杀虫剂一点用都没有",
    "我担心商家报复，想匿名举报",
    "气死我了，坑死人了，太过分了",
    "I got food poisoning from their snacks",
    "这个产品专门骗老年群体",
    "",
    "🙂",
])
def test_no_signal(text):
    assert default_detector().detect(text) is None


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "crisis.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("content", "message"), [
    ("signals:\n  self_harm:\n    phrases: [自杀]\n    patterns: ['(未闭合']\n",
     r"crisis.yaml:4: bad regular expression"),
    ("signals:\n  gossip:\n    phrases: [x]\n", r"crisis.yaml:2: unknown group 'gossip'"),
    ("signals:\n  violence:\n    phrases:\n      - 报复\n      - 12\n", r"crisis.yaml:5: must be a non-empty text"),
    ("signals:\n  violence:\n    phrases: [报复]\nexclusions:\n  jokez: [哈哈]\n", r"crisis.yaml:5: unknown exclusion 'jokez'"),
    ("signals:\n  violence:\n    phrases: [报复]\n  violence:\n    phrases: [x]\n", r"crisis.yaml:4: duplicate key"),
    ("words: []\n", r"crisis.yaml:1: needs a mapping 'signals'"),
    ("signals:\n  violence: {phrases: [a], pattern: [b]}\n", r"crisis.yaml:2: a group has 'phrases'"),
])
def test_bad_word_list_is_one_line_naming_file_and_line(tmp_path, content, message):
    with pytest.raises(CrisisListError, match=message) as caught:
        CrisisDetector.load(_write(tmp_path, content))
    assert "\n" not in str(caught.value)


def test_packaged_word_list_loads():
    assert CrisisDetector.load(DEFAULT_CRISIS_PATH).is_crisis("我想自杀")


class _NoCategories:
    name = "stub"

    async def parse(self, text, now):  # pragma: no cover - crisis-only rows are never classified
        raise AssertionError("rows without a category are not classified")


async def test_evaluate_reports_crisis_recall_and_false_alarms(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"text": ISSUE_MESSAGE, "crisis": True},
        {"text": "我们准备去他们公司门口拉横幅", "crisis": True},
        {"text": "主播说‘不想活了’是口头禅", "crisis": False},
        {"text": "这个价格便宜得我想哭", "crisis": True},  # labelled a crisis: a miss
        {"text": "我要投诉直播间虚假宣传", "crisis": False},
    ]) + "\n", encoding="utf-8")
    report = await evaluate(_NoCategories(), read_labelled(path), datetime(2026, 11, 16, tzinfo=UTC))
    assert report["crisis_n"] == 5
    assert report["crisis_recall"] == 0.6667 and report["crisis_false"] == 0.0
    assert [e["line"] for e in report["errors"]] == [4]


def test_crisis_must_be_true_or_false(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "x", "crisis": "yes"}\n', encoding="utf-8")
    with pytest.raises(EvaluationDataError, match=r"rows.jsonl:1: 'crisis' must be true or false"):
        read_labelled(path)
