"""Keyword expressions (FTS5 syntax, as searchd/keyword.py writes them) -> PostgreSQL tsquery SQL.

searchd hands the store one kind of keyword expression: double-quoted phrases (a `"` inside
doubled) joined by OR, AND and NOT (binary: `a NOT b` is a and not b), with parentheses. FTS5
reads it as it is; on PostgreSQL `tsquery_sql` turns it into an SQL expression in which each
phrase is `phraseto_tsquery('medlex', ?)` (so PostgreSQL tokenizes and stems it as it indexed
the chunks, and user text only ever travels as a bound parameter) and the operators are
tsquery's `||`, `&&` and `&& !!`. FTS5's precedence is kept: NOT binds tightest, then AND, then OR.
"""
from __future__ import annotations

import re

from indexer.errors import QueryError
from indexer.store.schema import PG_CONFIG

_TOKEN = re.compile(r'\s*(?:"((?:[^"]|"")*)"|(\()|(\))|(OR|AND|NOT)(?=[\s"(]|$))')


def _tokens(match: str) -> list[tuple[str, str]]:
    out, at = [], 0
    while at < len(match):
        m = _TOKEN.match(match, at)
        if m is None or m.end() == at:
            if match[at:].strip():
                raise QueryError(f"keyword expression {match!r} is not quoted phrases joined by OR, AND, NOT "
                                 f"(at {match[at:at + 20]!r})")
            break
        phrase, opened, closed, op = m.groups()
        out.append(("phrase", phrase.replace('""', '"')) if phrase is not None else
                   ("(", "") if opened else (")", "") if closed else (op, ""))
        at = m.end()
    return out


class _Parser:
    def __init__(self, match: str):
        self.match, self.tokens, self.at, self.params = match, _tokens(match), 0, []

    def peek(self) -> str | None:
        return self.tokens[self.at][0] if self.at < len(self.tokens) else None

    def take(self, kind: str) -> str:
        if self.peek() != kind:
            raise QueryError(f"keyword expression {self.match!r}: expected {kind} at token {self.at + 1}")
        self.at += 1
        return self.tokens[self.at - 1][1]

    def any_of(self) -> str:  # OR binds loosest
        expr = self.all_of()
        while self.peek() == "OR":
            self.take("OR")
            expr = f"({expr} || {self.all_of()})"
        return expr

    def all_of(self) -> str:
        expr = self.none_of()
        while self.peek() == "AND":
            self.take("AND")
            expr = f"({expr} && {self.none_of()})"
        return expr

    def none_of(self) -> str:  # NOT binds tightest
        expr = self.primary()
        while self.peek() == "NOT":
            self.take("NOT")
            expr = f"({expr} && !!{self.primary()})"
        return expr

    def primary(self) -> str:
        if self.peek() == "(":
            self.take("(")
            expr = self.any_of()
            self.take(")")
            return expr
        self.params.append(self.take("phrase"))
        return f"phraseto_tsquery('{PG_CONFIG}', ?)"


def tsquery_sql(match: str) -> tuple[str, list[str]]:
    """(SQL expression of type tsquery with `?` marks, its parameters) for a keyword expression."""
    parser = _Parser(match)
    expr = parser.any_of()
    if parser.peek() is not None:
        raise QueryError(f"keyword expression {match!r}: unexpected {parser.peek()} at token {parser.at + 1}")
    return expr, parser.params
