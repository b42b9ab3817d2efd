"""Charts for the dashboard as server-rendered SVG: no script, no CDN, printable, and every label
escaped (live-room and platform names come from complaint texts)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

BAR_COLOUR = "#2f6fb0"
SECOND_COLOUR = "#e08a2c"
TEXT_COLOUR = "#222"
FONT = 'font-family="Noto Sans CJK SC, Microsoft YaHei, sans-serif" font-size="12"'


def bar_chart(items: Sequence[tuple[str, int]], *, title: str, width: int = 520, label_width: int = 170,
              bar_height: int = 20, gap: int = 6) -> Markup:
    """Horizontal bars, one per (label, value), the value printed at the end of each bar."""
    top = 4
    height = top + len(items) * (bar_height + gap) + 4
    largest = max((value for _, value in items), default=0) or 1
    room = width - label_width - 60
    parts = [_open(width, height, title)]
    for index, (label, value) in enumerate(items):
        y = top + index * (bar_height + gap)
        length = round(room * value / largest) if value else 0
        middle = y + bar_height / 2 + 4
        parts.append(f'<text x="{label_width - 6}" y="{middle}" text-anchor="end" fill="{TEXT_COLOUR}">'
                     f'{_clip(label, 14)}</text>')
        parts.append(f'<rect x="{label_width}" y="{y}" width="{length}" height="{bar_height}" fill="{BAR_COLOUR}">'
                     f'<title>{escape(label)}: {value}</title></rect>')
        parts.append(f'<text x="{label_width + length + 4}" y="{middle}" fill="{TEXT_COLOUR}">{value}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def column_pairs(columns: Sequence[tuple[str, int, int]], *, title: str, names: tuple[str, str],
                 width: int = 960, height: int = 240) -> Markup:
    """Two columns per step (e.g. received and closed per week), each with its value on top, a scale with
    0, half and the largest value, and a legend under the axis."""
    left, bottom, top = 36, 44, 16
    plot_height = height - bottom - top
    step = (width - left - 8) / max(len(columns), 1)
    column = min(max(step / 2 - 3, 2), 40)
    largest = max((max(a, b) for _, a, b in columns), default=0) or 1
    parts = [_open(width, height, title)]
    for share in (0, 0.5, 1):
        y = top + plot_height * (1 - share)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 4}" y2="{y:.1f}" stroke="#ccc"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" fill="{TEXT_COLOUR}">'
                     f'{_scale_label(largest * share)}</text>')
    for index, (label, first, second) in enumerate(columns):
        x = left + index * step + (step - 2 * column) / 2
        for offset, value, colour, name in ((0, first, BAR_COLOUR, names[0]), (column, second, SECOND_COLOUR, names[1])):
            bar = round(plot_height * value / largest)
            parts.append(f'<rect x="{x + offset:.1f}" y="{top + plot_height - bar}" width="{column:.1f}" '
                         f'height="{bar}" fill="{colour}"><title>{escape(label)} {escape(name)}: {value}</title></rect>')
            if value:
                parts.append(f'<text x="{x + offset + column / 2:.1f}" y="{top + plot_height - bar - 3}" '
                             f'text-anchor="middle" font-size="10" fill="{TEXT_COLOUR}">{value}</text>')
        parts.append(f'<text x="{x + column:.1f}" y="{top + plot_height + 14}" text-anchor="middle" '
                     f'fill="{TEXT_COLOUR}" font-size="10">{escape(label)}</text>')
    legend_y = height - 10
    for index, (name, colour) in enumerate(zip(names, (BAR_COLOUR, SECOND_COLOUR), strict=True)):
        x = left + index * 120
        parts.append(f'<rect x="{x}" y="{legend_y - 9}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + 14}" y="{legend_y}" fill="{TEXT_COLOUR}">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _scale_label(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _open(width: int, height: int, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="{escape(title)}" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT}><title>{escape(title)}</title>')


def _clip(label: str, limit: int) -> str:
    return escape(label if len(label) <= limit else label[: limit - 1] + "…")
