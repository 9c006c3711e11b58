"""registry.keeprule: the keep rule and the kept fraction, the definitions the recipes, the search and the
reports' SQL share."""

from __future__ import annotations

import pytest

from registry.keeprule import KeepKind, KeepRule, kept_fraction
from registry.search import SearchSpec


def test_a_ratio_rule_keeps_a_fraction_of_the_full_score():
    rule = KeepRule.ratio(0.9)
    assert rule.kind is KeepKind.RATIO and rule.threshold(0.8) == pytest.approx(0.72)
    assert rule.holds(0.73, 0.8) and rule.holds(0.9, 0.8) and not rule.holds(0.719, 0.8)
    assert KeepRule.ratio(0.5).holds(0.4, 0.8) and not KeepRule.ratio(0.5).holds(0.3999, 0.8)
    # 0: every accuracy passes; a metric that goes negative (MCC) still has to stay >= 0
    assert KeepRule.ratio(0.0).holds(0.0, 0.4) and not KeepRule.ratio(0.0).holds(-0.1, 0.4)
    assert rule.holds(0.9 * 0.7, 0.7)  # a tie holds, as in the SQL (>=)


def test_a_margin_rule_allows_an_absolute_loss():
    rule = KeepRule.margin(0.03)
    assert rule.kind is KeepKind.MARGIN and rule.threshold(0.8) == pytest.approx(0.77)
    assert rule.holds(0.775, 0.8) and not rule.holds(0.76, 0.8)


def test_a_search_declares_its_rule_and_a_method_its_own():
    from registry.methods import METHODS

    assert SearchSpec(space={"target": {"low": 0.1, "high": 0.9}}).keep_rule == KeepRule(KeepKind.RATIO, 0.9)
    margin = SearchSpec(space={"target": {"low": 0.1, "high": 0.9}}, keep="margin", margin=0.05, keep_ratio=0.5)
    assert margin.keep_rule == KeepRule(KeepKind.MARGIN, 0.05)
    assert str(margin.keep_rule.kind) == "margin"  # the runs table's keep_rule value
    for name in METHODS.names():  # the default keep_ratio is declared once, in the method's schema
        assert METHODS.get(name).params().keep_rule == KeepRule.ratio(0.9)
    assert METHODS.get("l0").params(keep_ratio=0.7).keep_rule == KeepRule.ratio(0.7)


def test_the_kept_fraction_counts_units_or_parameters():
    assert kept_fraction(0.6, 0.25, "units") == pytest.approx(0.75)
    assert kept_fraction(0.6, 0.25, "params") == pytest.approx(0.4)
    assert kept_fraction(0.6, None, "units") == pytest.approx(0.4)  # magnitude: no units, its weights count
    assert kept_fraction(0.0, 0.0, "units") == 1.0


def test_the_sql_keep_line_is_the_python_threshold():
    """The reports' queries judge a subnetwork with the keep_line macro; it is KeepRule.threshold, for both kinds."""
    import duckdb

    from registry.keeprule import KEEP_LINE_SQL

    con = duckdb.connect(":memory:")
    con.execute(KEEP_LINE_SQL)
    for rule in (KeepRule.ratio(0.9), KeepRule.margin(0.01), KeepRule.ratio(0.0), KeepRule.margin(0.25)):
        for full in (0.0, 0.41, 0.8123, 1.0, -0.2):
            (got,) = con.execute("SELECT keep_line(?, ?, ?)", [rule.kind.value, rule.value, full]).fetchone()
            assert got == pytest.approx(rule.threshold(full), abs=1e-12), (rule, full)
