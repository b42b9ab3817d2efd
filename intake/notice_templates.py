"""The words of each notice, in the recipient's language, rendered from an outbox row's facts at send time.

Chinese is the source text (gettext msgids); English comes from the catalog. Buttons use the
conversation engine's values (intake/conversation.py), so a press on a notice lands in the same
dialogue as everything else: "add:<number>" answers an information request, "rate:<number>:<n>" rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from intake.conversation import RATING_LABELS, Button
from intake.notices import Template
from intake.status import OUTCOMES, REJECTION_GROUNDS
from nlu.taxonomy import CATEGORIES
from qinglang.i18n import N_, translations
from routing.directory import UnitDirectory

# where to go instead, by 不予受理 ground (the rejected notice says it in plain words)
GROUND_ADVICE = {
    "not_consumer_dispute": N_("如属经营纠纷，可以通过民事诉讼或仲裁解决。"),
    "no_jurisdiction": N_("请向有管辖权的部门反映；拨打 12315 可以查询。"),
    "court_or_arbitration": N_("请继续通过已受理的机构处理。"),
    "already_handled": N_("如有新的事实和证据，可以重新提出。"),
    "time_limit_passed": N_("可以通过民事诉讼主张权利。"),
    "missing_information": N_("补充完整的信息后可以重新提出。"),
    "anonymous_complaint": N_("投诉需要提供真实身份；也可以改为匿名举报违法线索。"),
    "no_clue": N_("如能提供具体的直播间、时间、商品和截图，可以重新举报。"),
    "other": N_("如有疑问，可以拨打 12315 咨询。"),
}
KIND_WORDS = {"complaint": N_("投诉"), "tipoff": N_("举报"), "consultation": N_("咨询")}
MAX_QUOTED = 3500  # Telegram allows 4096 characters per message; the rest is on the status page


@dataclass(frozen=True)
class RenderedNotice:
    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()


class NoticeRenderer:
    def __init__(self, directory: UnitDirectory) -> None:
        self._directory = directory

    def render(self, template: str, payload: dict[str, Any], language: str) -> RenderedNotice:
        tr = translations(language).gettext
        facts = _Facts(payload, language, tr, self._directory)
        build = getattr(self, f"_{Template(template).value}")
        return build(facts, tr)

    # -- to the complainant ---------------------------------------------------------------------------

    def _received(self, f: _Facts, _) -> RenderedNotice:
        lines = [_("您的{kind}已登记，编号 {number}。").format(kind=f.kind, number=f.number)]
        if f.get("authority"):
            lines.append(_("该事项不属于本局管辖，将移送：{authority}。").format(authority=f.get("authority")))
        elif f.unit:
            lines.append(_("承办单位：{unit}。").format(unit=f.unit))
        if f.due:
            lines.append(_("我们将在 {date} 前告知您处理决定。").format(date=f.due))
        return RenderedNotice("\n".join(lines))

    def _accepted(self, f: _Facts, _) -> RenderedNotice:
        lines = [_("{number}：已受理，由{unit}办理。").format(number=f.number, unit=f.unit or _("承办单位"))]
        if f.due:
            lines.append(_("办理期限至 {date}。").format(date=f.due))
        return RenderedNotice("\n".join(lines), _case_buttons(f, _))

    def _started(self, f: _Facts, _) -> RenderedNotice:
        lines = [_("{number}：{unit}已开始办理。").format(number=f.number, unit=f.unit or _("承办单位"))]
        if f.due:
            lines.append(_("办理期限至 {date}。").format(date=f.due))
        return RenderedNotice("\n".join(lines), _case_buttons(f, _))

    def _rejected(self, f: _Facts, _) -> RenderedNotice:
        ground = f.get("ground")
        lines = [_("{number}：决定不予受理。").format(number=f.number)]
        if ground in REJECTION_GROUNDS:
            lines.append(_("理由：{ground}。").format(ground=_(REJECTION_GROUNDS[ground])))
            lines.append(_(GROUND_ADVICE[ground]))
        lines.append(f.quoted("reply"))
        return RenderedNotice("\n".join(line for line in lines if line))

    def _transferred(self, f: _Facts, _) -> RenderedNotice:
        if f.get("authority"):
            lines = [_("{number}：已移送 {authority} 处理。").format(number=f.number, authority=f.get("authority")),
                     _("后续进展请向该机关了解；拨打 12315 可以查询其联系方式。")]
        else:
            lines = [_("{number}：已转交{unit}办理，承办单位会与您联系。").format(number=f.number, unit=f.unit)]
        return RenderedNotice("\n".join(lines))

    def _info_requested(self, f: _Facts, _) -> RenderedNotice:
        text = "\n".join([_("{number}：承办人员需要您补充以下信息：").format(number=f.number), f.quoted("question"),
                          _("请点击“补充材料”后发送文字、截图或视频。")])
        return RenderedNotice(text, ((Button(_("补充材料"), f"add:{f.number}"),),))

    def _staff_message(self, f: _Facts, _) -> RenderedNotice:
        text = "\n".join([_("{number}：承办人员给您留言：").format(number=f.number), f.quoted("body")])
        return RenderedNotice(text, _case_buttons(f, _))

    def _reply(self, f: _Facts, _) -> RenderedNotice:
        outcome = f.get("outcome")
        lines = [_("{number}：办理答复").format(number=f.number)]
        if outcome in OUTCOMES:
            lines.append(_("办理结果：{outcome}").format(outcome=_(OUTCOMES[outcome])))
        lines.append(f.quoted("reply"))
        return RenderedNotice("\n".join(lines), _case_buttons(f, _))

    def _closed(self, f: _Facts, _) -> RenderedNotice:
        return RenderedNotice(_("{number}：已办结归档。感谢您的监督。").format(number=f.number))

    def _reopened(self, f: _Facts, _) -> RenderedNotice:
        if f.get("rating") is not None:
            text = _("{number}：您的评价已收到。我们已重新打开此件，由消保分局复核。").format(number=f.number)
        else:
            text = _("{number}：已重新打开，继续办理。").format(number=f.number)
        return RenderedNotice(text, _case_buttons(f, _))

    def _duplicate(self, f: _Facts, _) -> RenderedNotice:
        lines = [_("{number}：与 {original} 反映的是同一事项，已合并办理。").format(
            number=f.number, original=f.get("original")), f.quoted("reply")]
        return RenderedNotice("\n".join(line for line in lines if line))

    def _still_in_progress(self, f: _Facts, _) -> RenderedNotice:
        text = _("{number}：仍在办理中，办理期限至 {date}。我们没有忘记您的事情。").format(number=f.number, date=f.due)
        return RenderedNotice(text, _case_buttons(f, _))

    def _survey(self, f: _Facts, _) -> RenderedNotice:
        text = _("{number} 已办结。您对处理结果满意吗？请点击 1 到 5 分评价（5 分最满意），也可以在评分后留言。").format(
            number=f.number)
        buttons = tuple(Button(f"{score} · {_(label)}", f"rate:{f.number}:{score}") for score, label in RATING_LABELS.items())
        return RenderedNotice(text, (buttons[:3], buttons[3:]))

    # -- to a unit's group chat (always Chinese) ------------------------------------------------------

    def _unit_new_case(self, f: _Facts, _) -> RenderedNotice:
        lines = [_("新案件 {number}（{kind} · {category}）已分派到本单位。").format(
            number=f.number, kind=f.kind, category=f.category)]
        if f.due:
            lines.append(_("最近期限：{date}。").format(date=f.due))
        return RenderedNotice("\n".join(lines))

    def _unit_urgent_case(self, f: _Facts, _) -> RenderedNotice:
        return RenderedNotice(_("⚠️ 紧急件 {number}（{kind} · {category}）：来信人提到自伤、暴力或群体性事件，"
                                "请值班人员立即查看并联系。").format(number=f.number, kind=f.kind, category=f.category))

    def _unit_reminder(self, f: _Facts, _) -> RenderedNotice:
        return RenderedNotice(_("提醒：{number} 的“{clock}”将于 {date} 到期，请及时办理。").format(
            number=f.number, clock=f.get("clock_name") or f.get("clock"), date=f.due))

    def _overdue_digest(self, f: _Facts, _) -> RenderedNotice:
        overdue = f.get("overdue") or []
        lines = [_("{date} 超期案件日报：共 {n} 件。").format(date=f.day("day"), n=len(overdue))]
        for item in overdue[:40]:
            unit = _unit_name(self._directory, item.get("unit"), f.language)
            flag = "" if item.get("replied") else _("（尚未答复投诉举报人）")
            lines.append(f"· {item.get('number')} {unit} {item.get('clock_name') or item.get('clock')} "
                         f"{f.format_day(item.get('due_on'))}{flag}")
        if len(overdue) > 40:
            lines.append(_("……其余 {n} 件见控制台。").format(n=len(overdue) - 40))
        return RenderedNotice("\n".join(lines))


class _Facts:
    """Read access to a payload with the formatting every template needs."""

    def __init__(self, payload: dict[str, Any], language: str, tr, directory: UnitDirectory) -> None:
        self._payload = payload
        self.language = language
        self._ = tr
        self._directory = directory

    def get(self, key: str) -> Any:
        return self._payload.get(key)

    @property
    def number(self) -> str:
        return str(self._payload.get("number") or "")

    @property
    def kind(self) -> str:
        kind = self._payload.get("kind")
        return self._(KIND_WORDS[kind]) if kind in KIND_WORDS else self._("登记")

    @property
    def category(self) -> str:
        found = next((c for c in CATEGORIES if c.id == self._payload.get("category")), None)
        if found is None:
            return str(self._payload.get("category") or "")
        return found.en if self.language == "en" else found.zh

    @property
    def unit(self) -> str:
        return _unit_name(self._directory, self._payload.get("unit"), self.language)

    @property
    def due(self) -> str:
        return self.day("due_on")

    def day(self, key: str) -> str:
        return self.format_day(self._payload.get(key))

    def format_day(self, value: str | None) -> str:
        if not value:
            return ""
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return str(value)
        return day.isoformat() if self.language == "en" else f"{day.year}年{day.month}月{day.day}日"

    def quoted(self, key: str) -> str:
        text = str(self._payload.get(key) or "").strip()
        if len(text) > MAX_QUOTED:
            text = text[:MAX_QUOTED] + "…"
        return text


def _unit_name(directory: UnitDirectory, code: str | None, language: str) -> str:
    if not code or not directory.has_unit(code):
        return code or ""
    unit = directory.unit(code)
    return (unit.name_en or unit.name) if language == "en" else unit.name


def _case_buttons(f: _Facts, _) -> tuple[tuple[Button, ...], ...]:
    return ((Button(_("查看进度"), f"case:{f.number}"), Button(_("补充材料"), f"add:{f.number}")),)
