"""The dashboard's chart, drawn on the server as SVG."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from hlrsmpp.server.console.charts import _nice, lookups_per_day


def test_bars_stack_each_days_results_to_scale():
    days = [{"day": "2026-12-01", "delivered": 80, "undelivered": 20},
            {"day": "2026-12-02", "delivered": 10, "other": 5}]
    svg = str(lookups_per_day(days)).split("<p")[0]
    root = ET.fromstring(svg)   # well-formed
    rects = root.findall("{http://www.w3.org/2000/svg}rect") or root.findall("rect")
    heights = {r.find("title").text: float(r.get("height")) for r in rects}
    assert set(heights) == {"2026-12-01: 80 delivered", "2026-12-01: 20 undelivered",
                            "2026-12-02: 10 delivered", "2026-12-02: 5 other"}
    assert abs(heights["2026-12-01: 80 delivered"] - 4 * heights["2026-12-01: 20 undelivered"]) < 0.2
    assert "115 in all" in root.get("aria-label")


def test_labels_are_escaped_and_an_empty_chart_draws():
    svg = str(lookups_per_day([{"day": "<script>", "delivered": 1}]))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "0 in all" in str(lookups_per_day([]))


def test_the_axis_top_is_a_round_number():
    assert [_nice(n) for n in (1, 3, 7, 11, 120, 999)] == [1, 5, 10, 20, 200, 1000]
    assert re.search(r">100<", str(lookups_per_day([{"day": "2026-12-01", "delivered": 100}])))
