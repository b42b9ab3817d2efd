"""Kind of a message: 投诉 complaint, 举报 tip-off or 咨询 consultation; None when the text does not say.

Explicit words decide first (a person who writes 举报 is reporting); the kind model trained on the
kind_* examples breaks ties and covers paraphrases. A message that could be both gets None, and the
bot asks.
"""

from __future__ import annotations

import re

CUES: dict[str, re.Pattern] = {
    "tipoff": re.compile(r"举报|查处|查一查|查一下这|处罚|严惩|曝光|管一管|管管|取缔|封号|立案|线索|整治|打击"),
    "complaint": re.compile(r"投诉|退款|退货|退钱|赔偿|赔付|退一赔|假一赔|换货|维权|说法|调解|协调|返还|补偿|要回"),
    "consultation": re.compile(r"请问|咨询|想问|问一下|问下|怎么办|能不能|可不可以|可以吗|是否|合法吗|违法吗|算不算|[吗么嘛][?？]?$|怎么|如何"),
}
MARGIN = 0.15


def decide_kind(text: str, model_scores: dict[str, float]) -> tuple[str | None, float]:
    """(kind, confidence). Cue counts weigh 0.5 each on top of the model's probability."""
    scores = dict(model_scores)
    cue_hits = {kind: len(pattern.findall(text)) for kind, pattern in CUES.items()}
    for kind, hits in cue_hits.items():
        scores[kind] = scores.get(kind, 0.0) + 0.5 * min(hits, 2)
    if not any(cue_hits.values()) and max(model_scores.values(), default=0.0) < 0.6:
        return None, max(model_scores.values(), default=0.0)
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    (best, top), (_, second) = ranked[0], ranked[1] if len(ranked) > 1 else ("", 0.0)
    if top - second < MARGIN:
        return None, model_scores.get(best, 0.0)
    total = sum(max(v, 0.0) for v in scores.values()) or 1.0
    return best, round(top / total, 4)
