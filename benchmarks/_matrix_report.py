"""The dead-peer matrix as the docs show it: a reStructuredText table and an SVG figure.

Both are made from ``dead_peer.py --json`` output (``--rst FILE``,
``--svg FILE``): one row per client and scenario, one column per method,
each cell the time to the client's error (or *hung*, *n/a*, *error*) with
a numbered note saying why where it is not simply within budget + 1 s.
"""

from __future__ import annotations

from html import escape
from typing import Any, Dict, List, Sequence, Tuple

#: (text, verdict, note number or 0)
Cell = Tuple[str, str, int]


def grid(
    results: List[Dict[str, Any]], methods: Sequence[str]
) -> Tuple[List[str], List[Tuple[str, str, List[Cell]]], List[str]]:
    """``(methods present, rows, notes)``: rows are ``(client, scenario, cells)``."""
    shown = [m for m in methods if any(r["method"] == m for r in results)]
    rows: Dict[Tuple[str, str], Dict[str, Dict[str, Any]]] = {}
    for r in results:
        rows.setdefault((r["client"], r["scenario"]), {})[r["method"]] = r
    notes: List[str] = []
    out = []
    for (client, scenario), by_method in rows.items():
        stub = any(r.get("stub") for r in by_method.values())
        cells: List[Cell] = []
        for method in shown:
            found = by_method.get(method)
            if found is None:
                cells.append(("", "", 0))
                continue
            r = found
            if r["status"] == "skipped":
                text = "n/a"
            elif r["status"] == "error":
                text = "error"
            else:
                text = "hung" if r["detected_ms"] is None else f"{r['detected_ms'] / 1000:.1f} s"
            why = r.get("reason") or (r.get("explanation") if r["verdict"] != "ok" else None)
            if r["verdict"] == "OVER":
                why = "over budget + 1 s, unexplained"
            number = 0
            if why:
                why = " ".join(str(why).split())
                if why not in notes:
                    notes.append(why)
                number = notes.index(why) + 1
            cells.append((text, r["verdict"], number))
        out.append((client + (" (stub)" if stub else ""), scenario, cells))
    return shown, out, notes


def rst_table(results: List[Dict[str, Any]], methods: Sequence[str]) -> str:
    """A simple reStructuredText table, then its numbered notes."""
    shown, rows, notes = grid(results, methods)
    body = [
        [client, scenario, *(f"{t} [{n}]" if n else t for t, _, n in cells)]
        for client, scenario, cells in rows
    ]
    header = ["client", "scenario", *shown]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    rule = " ".join("=" * w for w in widths)

    def fmt(cols: List[str]) -> str:
        return " ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()

    out = [rule, fmt(header), rule, *(fmt(line) for line in body), rule, ""]
    out += [f"[{i}] {note}\n" for i, note in enumerate(notes, 1)]
    return "\n".join(out)


_COLOURS = {
    "ok": "#b7e1b0",
    "explained": "#f6d58e",
    "skipped": "#e4e4e4",
    "OVER": "#f2a0a0",
    "ERROR": "#f2a0a0",
    "": "#ffffff",
}


def svg(results: List[Dict[str, Any]], methods: Sequence[str], title: str) -> str:
    """The same grid as a figure: green within budget + 1 s, amber explained, grey n/a."""
    shown, rows, _ = grid(results, methods)
    first, width, height, top = 180, 104, 24, 56
    total_w = first + width * len(shown) + 10
    total_h = top + height * len(rows) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}" '
        f'font-family="sans-serif" font-size="12">',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for i, method in enumerate(shown):
        x = first + i * width + width / 2
        parts.append(f'<text x="{x}" y="{top - 8}" text-anchor="middle">{escape(method)}</text>')
    for j, (client, scenario, cells) in enumerate(rows):
        y = top + j * height
        parts.append(f'<text x="10" y="{y + 16}">{escape(client)} · {escape(scenario)}</text>')
        for i, (text, verdict, number) in enumerate(cells):
            x = first + i * width
            parts.append(
                f'<rect x="{x}" y="{y}" width="{width - 2}" height="{height - 2}" '
                f'fill="{_COLOURS.get(verdict, "#ffffff")}"/>'
            )
            label = f"{text} [{number}]" if number else text
            parts.append(
                f'<text x="{x + width / 2 - 1}" y="{y + 16}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    legend_y = top + height * len(rows) + 24
    parts.append(
        f'<text x="10" y="{legend_y}">green: within budget + 1 s; amber: explained '
        f"(see the notes); grey: n/a; red: over budget, unexplained</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
