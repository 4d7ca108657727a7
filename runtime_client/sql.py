"""SQL cells: ``{"sql": "SELECT …"}`` items of a ``python`` task's ``cells``.

When the agent configures a SQL cell runner (``spec.sql.database``: an SQLite file in the
workspace), a SQL cell runs in the session's kernel as Python code: :func:`run_sql`'s source
followed by a call, so the kernel needs nothing installed (``sqlite3`` is in the standard
library) and the result is an ordinary display output: a MIME bundle with ``text/plain`` (an
aligned table), ``text/html`` (a ``<table>``) and ``application/json`` (``{"columns", "rows",
"row_count", "truncated"}``). Statements that return no rows display ``"N row(s) affected"``.
"""

from __future__ import annotations

import inspect
from typing import Any

MAX_ROWS = 1000


def run_sql(query: str, database: str, max_rows: int = 1000, readonly: bool = False) -> None:
    """Run one SQL statement against the SQLite file ``database`` and display the result.
    (Runs inside the kernel from its source: only the standard library and IPython, no
    module-level names.)"""
    import html
    import sqlite3

    from IPython.display import display

    uri = "file:" + database + ("?mode=ro" if readonly else "")
    con = sqlite3.connect(uri, uri=True)
    try:
        cur = con.execute(query)
        if cur.description is None:
            con.commit()
            display({"text/plain": f"{cur.rowcount} row(s) affected"}, raw=True)
            return
        columns = [d[0] for d in cur.description]
        fetched = cur.fetchmany(max_rows + 1)
    finally:
        con.close()
    truncated = len(fetched) > max_rows
    rows = [[v if isinstance(v, int | float | str) or v is None else repr(v) for v in r]
            for r in fetched[:max_rows]]  # fmt: skip
    cells = [columns] + [["NULL" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in cells[1:]
    )
    display({
        "text/plain": "\n".join(lines) + ("\n…" if truncated else ""),
        "text/html": f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
        "application/json": {"columns": columns, "rows": rows, "row_count": len(rows),
                             "truncated": truncated},
    }, raw=True)  # fmt: skip


def sql_cell_code(query: str, config: dict[str, Any], database: str) -> str:
    """The Python source a SQL cell runs as in the kernel (``database`` as the kernel sees it)."""
    source = inspect.getsource(run_sql)
    call = (
        f"run_sql({query!r}, {database!r}, {int(config.get('max_rows', MAX_ROWS))!r}, "
        f"{bool(config.get('readonly', False))!r})"
    )
    # A private namespace: the helper must not shadow or leave names in the user's globals.
    return f"exec(compile({source + call!r}, '<sql cell>', 'exec'), {{}})"
