"""The portal's server-drawn charts: round ticks, escaped labels, a description for screen readers."""

from __future__ import annotations

import re

import pytest

from orderdesk.portal import charts


@pytest.mark.parametrize(
    ("peak", "whole", "step"),
    [
        (3, True, 1),
        (3, False, 1),
        (100, False, 25),
        (7, True, 2),
        (0.02, False, 0.005),
        (0, True, 1),
        (0.3, True, 1),
    ],
)
def test_ticks_are_round(peak, whole, step):
    assert charts.nice_step(peak, whole=whole) == pytest.approx(step)


def test_bars_scale_to_the_axis_and_labels_are_escaped():
    svg = charts.bar_chart(
        "t", "Orders <by> status", ["a&b", "c"], [charts.Series("orders", [3, 1])], whole=True
    )
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([0-9.]+)"', svg)]
    plot = charts.HEIGHT - charts.TOP - charts.BOTTOM
    assert heights == pytest.approx([plot * 3 / 4, plot * 1 / 4])  # axis top is 4
    assert "a&amp;b" in svg and "Orders &lt;by&gt; status" in svg and "<by>" not in svg
    assert 'role="img"' in svg and "<desc" in svg and "a&amp;b: 3" in svg


def test_stacked_bars_sit_on_each_other():
    svg = charts.bar_chart(
        "d",
        "Deliveries",
        ["w1"],
        [charts.Series("on time", [2]), charts.Series("late", [2])],
        stacked=True,
        whole=True,
    )
    ys = [float(y) for y in re.findall(r'<rect x="[0-9.]+" y="([0-9.]+)"', svg)]
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([0-9.]+)"', svg)]
    assert ys[1] == pytest.approx(ys[0] - heights[1])


def test_an_empty_chart_says_so():
    assert "No data yet" in charts.bar_chart("e", "Empty", [], [])
