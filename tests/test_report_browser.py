"""The report in a real browser: headless Chromium opens the page of the tiny end-to-end run and
checks what a reader would see (console, network, tables, images, the viewer's filter).

Needs Debian's `chromium`; without it the tests skip with the reason, except under CI=true, where
a missing browser is a failure (CI installs it, see .ci/run)."""

from __future__ import annotations

import os

import pytest

from mllm.report.browser import check_page, find_chromium

CHROMIUM = find_chromium()
if CHROMIUM is None and os.environ.get("CI") != "true":
    pytest.skip("no Chromium (apt-get install chromium)", allow_module_level=True)

# Pick the most frequent hallucinated object (or any, if none), then count the images the filter leaves visible.
FILTER_PROBE = """(() => {
  const filter = document.getElementById('hallucination-filter');
  const visible = () => [...document.querySelectorAll('.viewer-item')].filter(i => !i.hidden).length;
  const all = visible();
  filter.value = filter.options[2] ? filter.options[2].value : '*';
  filter.dispatchEvent(new Event('change'));
  const tagged = [...document.querySelectorAll('.viewer-item')].filter(i => filter.value === '*'
    ? i.dataset.objects !== '' : i.dataset.objects.split('|').includes(filter.value)).length;
  return {all: all, shown: visible(), tagged: tagged,
          count: Number(document.getElementById('hallucination-count').textContent)};
})()"""


def test_browser_check_catches_remote_requests_console_errors_and_broken_images(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>bad</title><link rel='icon' href='data:,'></head><body>"
        "<table><thead><tr><th>x</th></tr></thead><tbody></tbody></table>"
        "<img alt='remote' src='http://192.0.2.1/x.png'>"
        "<script>console.error('boom')</script></body></html>"
    )
    problems = check_page(page, chromium=CHROMIUM).problems()
    assert any("console error: boom" in p for p in problems)
    assert any("request leaves the machine: http://192.0.2.1/x.png" in p for p in problems)
    assert any("table without rows" in p for p in problems)
    assert any("image did not load: 'remote'" in p for p in problems)


@pytest.mark.slow
def test_tiny_run_report_in_headless_chromium(tiny_run, tmp_path):
    workdir, _ = tiny_run
    screenshot = tmp_path / "report.png"
    result = check_page(
        workdir / "results" / "report" / "index.html",
        screenshot=screenshot,
        chromium=CHROMIUM,
        probe=FILTER_PROBE,
    )
    assert result.problems() == []
    facts = result.facts
    assert facts["sections"][:2] == ["overview", "headline"]
    assert {"sft", "preference", "pope", "viewer", "provenance"} <= set(facts["sections"])
    assert facts["tables"] >= 5 and facts["images"] > 16  # 16 benchmark images + figures
    assert all(url.startswith(("file:", "data:")) for url in result.requests)
    probe = facts["probe"]
    assert probe["all"] == 16 and probe["shown"] == probe["tagged"] == probe["count"]
    assert screenshot.stat().st_size > 10_000
