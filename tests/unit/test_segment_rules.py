"""The segment rule language (segments.rules): parsed at config load, no code evaluated."""

from __future__ import annotations

import re

import pytest

from recpipe.config import ConfigError, load_config
from recpipe.features.segment_rules import Clause, RuleError, parse_rule, parse_rules

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text, clauses",
    [
        ("interest.sports >= 0.3", [Clause("interest", "sports", ">=", 0.3)]),
        ("days_since_last_seen > 14", [Clause("days_since_last_seen", None, ">", 14.0)]),
        ("events_total<=50", [Clause("events_total", None, "<=", 50.0)]),
        ("interest_weight < 1.5e1", [Clause("interest_weight", None, "<", 15.0)]),
        ("events.click == 0", [Clause("events", "click", "==", 0.0)]),
        ("tag.world-cup != .25", [Clause("tag", "world-cup", "!=", 0.25)]),
        ("subcategory.r&b >= -1", [Clause("subcategory", "r&b", ">=", -1.0)]),
        ('interest."food & drink" > 0.2', [Clause("interest", "food & drink", ">", 0.2)]),
        # field names and `and` in any case; keys as written
        (
            "Interest.Sports >= 0.3 AND Days_Since_Last_Seen <= 7 and events.read > 2",
            [
                Clause("interest", "Sports", ">=", 0.3),
                Clause("days_since_last_seen", None, "<=", 7.0),
                Clause("events", "read", ">", 2.0),
            ],
        ),
    ],
)
def test_good_rules_parse_into_clauses(text, clauses):
    rule = parse_rule("fans", text)
    assert rule.name == "fans" and rule.text == text.strip()
    assert list(rule.clauses) == clauses


@pytest.mark.parametrize("op", [">=", ">", "<=", "<", "==", "!="])
def test_every_operator(op):
    assert parse_rule("s", f"events_total {op} 3").clauses == (Clause("events_total", None, op, 3.0),)


@pytest.mark.parametrize(
    "text, message",
    [
        ("popularity > 3", "unknown field 'popularity' at position 0 (fields: days_since_last_seen"),
        ("interest >= 0.3", "field 'interest' at position 0 needs a key: interest.<key>"),
        ("events_total.x > 1", "field 'events_total.x' at position 0: events_total takes no key"),
        ('interest."" > 1', """field 'interest.""' at position 0 has an empty key"""),
        ("interest.sports => 0.3", "unexpected '=>' at position 16 (operators: >= <= == != > <)"),
        ("interest.sports = 0.3", "unexpected '=' at position 16"),
        ("interest.sports 0.3", "expected an operator (>= <= == != > <) at position 16, got '0.3'"),
        ("interest.sports >= high", "expected a number at position 19, got 'high'"),
        ("interest.sports >= 0.3 or events_total > 1", "expected 'and' at position 23, got 'or'"),
        ("interest.sports >=", "rule ends early: expected a number after '>='"),
        ("events_total > 1 and", "rule ends early: expected a clause after 'and' at position 17"),
        ("", "empty rule: expected FIELD OP NUMBER"),
        ("interest.food & drink > 1", "unexpected '&' at position 14 (a key with other characters is quoted"),
        ("__import__('os') > 1", "unexpected \"('os')\" at position 10"),
        ("events_total > 1; drop", "unexpected ';' at position 16"),
    ],
)
def test_bad_rules_name_the_offending_token(text, message):
    with pytest.raises(RuleError, match=re.escape(message)):
        parse_rule("s", text)


@pytest.mark.parametrize("name", ["cluster_0", "1st", "with space", ""])
def test_segment_names_are_plain_and_leave_cluster_names_to_the_clusters(name):
    with pytest.raises(RuleError, match="invalid segment name"):
        parse_rule(name, "events_total > 1")


def test_parse_rules_names_the_key():
    with pytest.raises(RuleError, match=re.escape("key 'segments.rules.fans': unknown field 'x'")):
        parse_rules({"ok": "events_total > 1", "fans": "x > 1"})


def test_shipped_config_rules_parse():
    cfg = load_config("conf/local.yaml")
    rules = parse_rules(cfg.segments.rules)
    assert rules["dormant"].clauses == (Clause("days_since_last_seen", None, ">", 14.0),)


def test_a_bad_rule_fails_config_load_naming_file_key_and_token(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text('mode: local\nlake: {root: /x}\nsegments: {rules: {fans: "interest.sports >> 0.3"}}\n')
    with pytest.raises(
        ConfigError,
        match=re.escape("c.yaml: key 'segments.rules.fans': expected a number at position 17, got '>'"),
    ):
        load_config(p)


def test_a_bad_rule_override_fails_config_load():
    with pytest.raises(ConfigError, match=r"key 'segments\.rules\.dormant': unknown field 'days'"):
        load_config("conf/local.yaml", ["segments.rules.dormant=days > 14"])
