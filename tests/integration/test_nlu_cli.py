"""`qinglang nlu ...` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(args, tmp_path, **env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("QINGLANG_")}
    environment.update(QINGLANG_DATA_DIR=str(tmp_path / "data"), HOME=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-m", "qinglang.cli", "nlu", *args], env=environment, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_classify_prints_json(tmp_path):
    result = run(["classify", "我在抖音直播间花了399元买的羊绒衫，检测不含羊绒，我要举报"], tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["category"] == "product_quality"
    assert data["kind"] == "tipoff"
    assert data["entities"]["platform"] == "抖音"
    assert data["entities"]["amount_fen"] == 39900
    assert data["backend"] == "embedded"
    assert data["explanation"]
    # the model was trained once and cached under the data directory
    assert list((tmp_path / "data" / "nlu").glob("embedded-*.joblib"))


def test_classify_empty_text_is_one_line_error(tmp_path):
    result = run(["classify", "  🙂 "], tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "请用文字描述" in result.stderr


def test_classify_with_rasa_down_falls_back(tmp_path):
    result = run(["classify", "--backend", "rasa", "直播间卖的奶粉过期了"], tmp_path, QINGLANG_RASA_URL="http://127.0.0.1:1")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["backend"] == "embedded"
    assert data["fallback_reason"].startswith("rasa unavailable")


def test_rasa_backend_without_url_is_one_line_error(tmp_path):
    result = run(["classify", "--backend", "rasa", "你好"], tmp_path)
    assert result.returncode == 2
    assert "QINGLANG_RASA_URL" in result.stderr


def test_evaluate_prints_metrics(tmp_path):
    data = tmp_path / "eval.jsonl"
    data.write_text(
        json.dumps({"text": "直播间买的零食过期了还吃坏了肚子", "category": "food_safety"}, ensure_ascii=False) + "\n"
        + json.dumps({"text": "主播说原价999今天99，其实一直卖99", "category": "price"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    result = run(["evaluate", "--data", str(data)], tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) >= {"accuracy", "macro_f1", "per_category", "confusion"}
    assert report["per_category"]["food_safety"]["support"] == 1
    assert report["n"] == 2


def test_evaluate_unknown_category_names_the_line(tmp_path):
    data = tmp_path / "eval.jsonl"
    data.write_text('{"text": "a", "category": "price"}\n{"text": "b", "category": "fraud"}\n', encoding="utf-8")
    result = run(["evaluate", "--data", str(data)], tmp_path)
    assert result.returncode == 2
    assert f"{data}:2: unknown category 'fraud'" in result.stderr


def test_crossval(tmp_path):
    result = run(["crossval", "--folds", "3"], tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["folds"]) == 3 and report["macro_f1"] > 0.8
