"""ListTasks' `name_contains`: a case-insensitive substring match that takes the text
literally, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from sqlalchemy import ColumnElement

_ESCAPE = "\\"


def like_literal(text: str) -> str:
    """`text` as a LIKE pattern that matches only itself: the escape character and the
    wildcards `%` and `_` are escaped (a name with "50%" must not match "50 tasks")."""
    for special in (_ESCAPE, "%", "_"):
        text = text.replace(special, _ESCAPE + special)
    return text


def name_contains(column: ColumnElement[str], text: str) -> ColumnElement[bool]:
    """`column` contains `text`, ignoring case. SQLAlchemy's ilike is ILIKE on PostgreSQL
    and lower() LIKE lower() on SQLite (whose LIKE folds ASCII letters only, as its
    lower() does); the ESCAPE is spelled out because SQLite has no default one."""
    return column.ilike(f"%{like_literal(text)}%", escape=_ESCAPE)
