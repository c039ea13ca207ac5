"""HTML tables of the report (shared by its sections)."""

from __future__ import annotations

import html
from collections.abc import Sequence


def html_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    row_classes: Sequence[str] | None = None,
    groups: Sequence[tuple[str, int]] | None = None,
    numeric: Sequence[int] | None = None,
) -> str:
    """A table of already-escaped HTML cells; `groups` adds a spanning header row above. Columns
    in `numeric` (default: all but the first) are right-aligned, the others wrap as text."""
    numeric = set(range(1, len(headers)) if numeric is None else numeric)
    css = ["num" if index in numeric else "text" for index in range(len(headers))]
    head = ""
    if groups:
        head = "<tr>" + "".join(
            f'<th colspan="{span}" class="group">{html.escape(name)}</th>' for name, span in groups
        )
        head += "</tr>"
    head += "<tr>" + "".join(
        f'<th class="{kind}">{html.escape(h)}</th>' for kind, h in zip(css, headers, strict=True)
    )
    head += "</tr>"
    body = []
    for index, row in enumerate(rows):
        row_css = f' class="{row_classes[index]}"' if row_classes and row_classes[index] else ""
        cells = "".join(
            f'<td class="{kind}">{cell}</td>' for kind, cell in zip(css, row, strict=True)
        )
        body.append(f"<tr{row_css}>{cells}</tr>")
    return f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(body)}</tbody></table></div>'
