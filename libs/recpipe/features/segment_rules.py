"""The segment rule language of ``segments.rules`` (parsed at config load; no Spark, no eval).

A rule is one or more clauses joined with ``and`` (any case)::

    rule    := clause ( "and" clause )*
    clause  := field op number
    op      := ">=" | ">" | "<=" | "<" | "==" | "!="
    number  := an optional "-", digits with an optional fraction and exponent (0.3, 50, 1e-3)
    field   := "days_since_last_seen" | "events_total" | "interest_weight"
             | ( "interest" | "subcategory" | "tag" | "events" ) "." key
    key     := [A-Za-z0-9_&-]+  |  '"' any characters but '"' '"'

Fields, over one row of ``gold.user_profiles`` (see :data:`FIELDS`): ``interest.<category>``,
``subcategory.<subcategory>`` and ``tag.<tag>`` are shares of the user's interest weight (0..1,
0 when the user has none of it); ``events.<event_type>`` and ``events_total`` are event counts;
``days_since_last_seen`` is fractional days from the last event to the segments' as-of time;
``interest_weight`` is the decayed interest weight at that time. Field names are case-insensitive;
keys are matched exactly as stored (``interest.sports``, ``interest."food & drink"``).

Examples: ``interest.sports >= 0.3``, ``days_since_last_seen > 14 and events_total >= 20``,
``events.click > 0 and interest."food & drink" >= 0.2``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Plain fields (no key) and keyed fields (``prefix.key``), with what each means (CLI help, docs).
PLAIN_FIELDS = {
    "days_since_last_seen": "days from the user's last event to the as-of time (fractional)",
    "events_total": "the user's number of events",
    "interest_weight": "the user's interest weight, decayed to the as-of time (profiles.half_life_hours)",
}
KEYED_FIELDS = {
    "interest": "share of the user's interest weight in a category (0..1)",
    "subcategory": "share of the user's interest weight in a subcategory (0..1)",
    "tag": "share of the user's interest weight carried by items with a tag (0..1)",
    "events": "the user's number of events of a type (click, read, ...)",
}
FIELDS = {**PLAIN_FIELDS, **{f"{k}.<key>": v for k, v in KEYED_FIELDS.items()}}
OPS = (">=", "<=", "==", "!=", ">", "<")
# Segment names: the value of gold.user_segments.segment; cluster_<n> is kept for the clusters.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
CLUSTER_NAME = re.compile(r"cluster_[0-9]+")

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<field>[A-Za-z_][A-Za-z0-9_]*(?:\.(?:"[^"]*"|[A-Za-z0-9_&-]+))?)
      | (?P<op>>=|<=|==|!=|>|<)
      | (?P<number>-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)
    )""",
    re.VERBOSE,
)


class RuleError(ValueError):
    """A rule does not parse; the message names the offending token and its position."""


@dataclass(frozen=True)
class Clause:
    """``field[.key] op value``; ``key`` is None for a plain field."""

    field: str
    key: str | None
    op: str
    value: float

    def __str__(self) -> str:
        key = "" if self.key is None else "." + (self.key if _bare(self.key) else f'"{self.key}"')
        return f"{self.field}{key} {self.op} {self.value:g}"


@dataclass(frozen=True)
class Rule:
    """A parsed rule: every clause must hold."""

    name: str
    text: str
    clauses: tuple[Clause, ...]


def _bare(key: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9_&-]+", key) is not None


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """``(kind, token, position)`` for each token; RuleError at the first unreadable character."""
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            bad = text[pos:].lstrip()
            at = len(text) - len(bad)
            hint = ""
            if bad[0] in "=<>!":
                hint = f" (operators: {' '.join(OPS)})"
            elif out and out[-1][0] == "field":
                hint = ' (a key with other characters is quoted: interest."food & drink")'
            raise RuleError(f"unexpected {bad.split()[0]!r} at position {at}{hint}")
        kind = m.lastgroup or ""
        token = m.group(kind)
        out.append((kind, token, m.start(kind)))
        pos = m.end()
    return out


def _field(token: str, at: int) -> tuple[str, str | None]:
    name, dot, key = token.partition(".")
    lname = name.lower()
    if not dot:
        if lname in PLAIN_FIELDS:
            return lname, None
        if lname in KEYED_FIELDS:
            raise RuleError(f"field {token!r} at position {at} needs a key: {lname}.<key>")
    elif lname in KEYED_FIELDS:
        if key.startswith('"'):
            key = key[1:-1]
        if not key:
            raise RuleError(f"field {token!r} at position {at} has an empty key")
        return lname, key
    elif lname in PLAIN_FIELDS:
        raise RuleError(f"field {token!r} at position {at}: {lname} takes no key")
    allowed = ", ".join(FIELDS)
    raise RuleError(f"unknown field {token!r} at position {at} (fields: {allowed})")


def parse_rule(name: str, text: str) -> Rule:
    """Parse one rule; :class:`RuleError` names the offending token (no code is evaluated)."""
    if not NAME.fullmatch(name) or CLUSTER_NAME.fullmatch(name):
        raise RuleError(
            f"invalid segment name {name!r}: letters, digits, '_' and '-', starting with a letter "
            "(cluster_<n> is kept for the clusters)"
        )
    tokens = _tokens(text)
    if not tokens:
        raise RuleError("empty rule: expected FIELD OP NUMBER, e.g. 'interest.sports >= 0.3'")
    clauses, i = [], 0
    while True:
        group = tokens[i : i + 3]
        kinds = [k for k, _, _ in group]
        expected = ["field", "op", "number"]
        for want, (kind, token, at) in zip(expected, group, strict=False):
            if kind != want:
                what = {"field": "a field", "op": f"an operator ({' '.join(OPS)})", "number": "a number"}
                raise RuleError(f"expected {what[want]} at position {at}, got {token!r}")
        if len(group) < 3:
            missing = {"field": "a field", "op": "an operator", "number": "a number"}[expected[len(kinds)]]
            raise RuleError(f"rule ends early: expected {missing} after {tokens[-1][1]!r}")
        (_, ftoken, fat), (_, op, _), (_, number, _) = group
        field, key = _field(ftoken, fat)
        clauses.append(Clause(field, key, op, float(number)))
        i += 3
        if i == len(tokens):
            return Rule(name, text.strip(), tuple(clauses))
        kind, token, at = tokens[i]
        if kind != "field" or token.lower() != "and":
            raise RuleError(f"expected 'and' at position {at}, got {token!r}")
        if i + 1 == len(tokens):
            raise RuleError(f"rule ends early: expected a clause after 'and' at position {at}")
        i += 1


def parse_rules(rules: dict[str, str]) -> dict[str, Rule]:
    """Every rule of ``segments.rules`` parsed; a RuleError names the key ``segments.rules.<name>``."""
    out = {}
    for name, text in rules.items():
        try:
            out[name] = parse_rule(name, text)
        except RuleError as exc:
            raise RuleError(f"key 'segments.rules.{name}': {exc} in rule {text!r}") from None
    return out
