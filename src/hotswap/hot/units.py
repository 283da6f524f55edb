"""A body cut into units and the units of two versions paired (pure; :mod:`.diff` plans them).

A unit is one top-level statement of a module or class body: a ``def``/``class`` is keyed by
its name (and its rank among same-named ones, for property getter/setter pairs), any other
statement by its AST text. :func:`pair` walks the new body in order and pairs each unit with
the old one it replaces, if any.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from hotswap.hot.names import DEF_TYPES, dump, first_line


@dataclass
class Lines:
    """The source lines of both versions (statements are compared by text first)."""

    old: list[str]
    new: list[str]


def split_doc(body: list[ast.stmt]) -> tuple[str | None, list[ast.stmt]]:
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        return body[0].value.value, body[1:]
    return None, body


def name_key(stmt: ast.stmt) -> tuple[str, str] | None:
    if isinstance(stmt, DEF_TYPES):
        return ("def", stmt.name)
    if isinstance(stmt, ast.ClassDef):
        return ("class", stmt.name)
    return None


def text_of(stmt: ast.stmt, lines: list[str]) -> str:
    start = first_line(stmt) if isinstance(stmt, DEF_TYPES | ast.ClassDef) else stmt.lineno
    return "\n".join(lines[start - 1 : stmt.end_lineno or stmt.lineno])


def same_unit(old: ast.stmt, new: ast.stmt, src: Lines) -> bool:
    """Same text, or (slower, for cosmetic edits) the same AST. A class whose text differs is
    diffed statement by statement instead (an empty plan then means it is the same)."""
    if text_of(old, src.old) == text_of(new, src.new):
        return True
    return not isinstance(new, ast.ClassDef) and dump(old) == dump(new)


def pair(
    old_stmts: list[ast.stmt], new_stmts: list[ast.stmt], src: Lines
) -> tuple[list[tuple[ast.stmt, ast.stmt | None]], list[ast.stmt]]:
    """Pair each new statement with its old counterpart (None if it is new) and list the old
    statements left over. Every statement pairs first with an old one of the same text (so an
    ``@overload`` added above an unchanged implementation leaves the implementation paired with
    itself); then ``def``/``class`` pair by name in order among the same-named ones left, other
    statements by their AST (a reformatted statement still counts as unchanged and is not run
    again), and an annotated assignment whose target and value are unchanged pairs with its old
    self (only its annotation changed)."""
    by_text: dict[str, list[ast.stmt]] = {}
    for stmt in old_stmts:
        by_text.setdefault(text_of(stmt, src.old), []).append(stmt)
    used: set[int] = set()
    pairs: list[tuple[ast.stmt, ast.stmt | None]] = []
    pending: list[int] = []
    for stmt in new_stmts:
        bucket = by_text.get(text_of(stmt, src.new))
        prev = bucket.pop(0) if bucket else None
        if prev is None:
            pending.append(len(pairs))
        else:
            used.add(id(prev))
        pairs.append((stmt, prev))
    if not pending:
        return pairs, [s for s in old_stmts if id(s) not in used]
    left: dict[object, list[ast.stmt]] = {}
    for stmt in old_stmts:
        if id(stmt) not in used:
            for key in keys_of(stmt):
                left.setdefault(key, []).append(stmt)
    for i in pending:
        stmt = pairs[i][0]
        for key in keys_of(stmt):
            bucket = left.get(key)
            while bucket and id(bucket[0]) in used:
                bucket.pop(0)
            if bucket:
                prev = bucket.pop(0)
                used.add(id(prev))
                pairs[i] = (stmt, prev)
                break
    return pairs, [s for s in old_stmts if id(s) not in used]


def keys_of(stmt: ast.stmt) -> list[object]:
    """What a statement left unpaired by its text may still pair by, best first."""
    named = name_key(stmt)
    if named is not None:
        return [named]
    keys: list[object] = [("ast", dump(stmt))]
    if isinstance(stmt, ast.AnnAssign):
        value = None if stmt.value is None else dump(stmt.value)
        keys.append(("annotated", dump(stmt.target), value, stmt.simple))
    return keys


def annotation_only(old: ast.stmt, new: ast.stmt) -> bool:
    """A paired annotated assignment whose annotation alone changed."""
    return (
        isinstance(old, ast.AnnAssign)
        and isinstance(new, ast.AnnAssign)
        and dump(old.annotation) != dump(new.annotation)
    )
