"""ANSI rendering and log parsing, run in Chromium on the very modules the job page loads."""

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings

pytestmark = pytest.mark.browser

E = "\x1b"

RENDER = """async ([prefix, text]) => {
    const { lineToHtml } = await import('/static/js/ansi.js');
    return lineToHtml(prefix, text);
}"""

MODEL = """async (content) => {
    const { LogModel } = await import('/static/js/logmodel.js');
    const model = new LogModel();
    model.append(content);
    model.complete();
    return { text: model.text, sgr: model.sgr, folds: model.folds.map(f => [f.name, f.start, f.end, f.failed]),
             durations: [...model.durations] };
}"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def strip(page, text: str) -> str:
    return page.evaluate("async (t) => (await import('/static/js/ansi.js')).stripAnsi(t)", text)


@pytest.fixture(scope="module")
def static_server():
    """The project's files over plain HTTP: these checks need the modules, not the application."""
    handler = functools.partial(QuietHandler, directory=str(settings.BASE_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def js(static_server, page):
    page.goto(f"{static_server}/static/js/vendor/ansi_up/README.md")
    return page


@pytest.mark.parametrize(("text", "expected"), [
    (f"{E}[31mred{E}[0m plain", '<span class="ansi-red-fg">red</span> plain'),
    (f"{E}[1;92mbright{E}[0m", '<span class="a-b ansi-bright-green-fg">bright</span>'),
    (f"{E}[2mfaint{E}[22m {E}[3mitalic{E}[23m {E}[4munder",
     '<span class="a-f">faint</span> <span class="a-i">italic</span> <span class="a-u">under</span>'),
    (f"{E}[38;5;208morange", '<span class="xf-ff8700">orange</span>'),
    (f"{E}[38;5;1mpalette red", '<span class="ansi-red-fg">palette red</span>'),
    (f"{E}[48;2;1;2;3mtruecolor", '<span class="xb-010203">truecolor</span>'),
    (f"{E}[2K{E}[1G{E}[?25lcursor codes{E}[3A gone", "cursor codes gone"),
    ("<b>&'\"", "&lt;b&gt;&amp;&#39;&quot;"),
    (f"{E}]0;window title{E}\\after", "after"),
    (f"{E}]8;;https://example.com/a?b=1&c=2{E}\\link{E}]8;;{E}\\",
     '<a href="https://example.com/a?b=1&amp;c=2" rel="nofollow noopener noreferrer" target="_blank">link</a>'),
    (f"{E}]8;;javascript:alert(1){E}\\no link{E}]8;;{E}\\", "no link"),
])
def test_sgr_and_links_render_to_escaped_class_based_html(js, text, expected):
    assert js.evaluate(RENDER, ["", text]) == expected


@pytest.mark.parametrize("url", ["javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<b>x</b>",
                                 "vbscript:x", "java\tscript:alert(1)", "//evil.example/", "file:///etc/passwd"])
def test_osc8_links_other_than_http_never_become_anchors(js, url):
    html = js.evaluate(RENDER, ["", f"{E}]8;;{url}{E}\\text{E}]8;;{E}\\"])
    assert "<a" not in html and "text" in html


def test_truecolor_classes_get_a_rule_and_no_inline_style(js):
    js.evaluate(RENDER, ["", f"{E}[38;2;10;200;250mx"])
    rules = js.evaluate("() => [...document.adoptedStyleSheets].flatMap(s => [...s.cssRules].map(r => r.cssText))")
    assert any(".xf-0ac8fa" in r and "rgb(10, 200, 250)" in r for r in rules)
    assert "style=" not in js.evaluate(RENDER, ["", f"{E}[1;3;4;38;2;1;2;3;48;5;200mx"])


def test_colour_carries_over_lines_through_the_prefix(js):
    result = js.evaluate(MODEL, f"{E}[32mgreen starts\nstill green\n{E}[0mplain\n")
    assert result["sgr"] == ["", f"{E}[32m", f"{E}[32m"]
    green = js.evaluate(RENDER, [result["sgr"][1], result["text"][1]])
    assert green == '<span class="ansi-green-fg">still green</span>'
    assert js.evaluate(RENDER, [result["sgr"][2], result["text"][2]]) == "plain"


def test_carriage_return_overwrites_the_line_and_erase_clears_it(js):
    result = js.evaluate(MODEL, f"10%\r50%\r100%\r\n{E}[33mdownloading 3%\r{E}[K\nwindows line\r\nkeep\r\n")
    plain = [strip(js, t) for t in result["text"]]
    assert plain == ["100%", "", "windows line", "keep"]
    assert result["sgr"][2] == f"{E}[33m"  # the colour set before the overwrite still applies after it


def test_folds_and_timers_are_parsed_and_marker_lines_hidden(js):
    log = (f"travis_fold:start:install\r{E}[0Ktravis_time:start:ab12\r{E}[0K$ make install\n"
           "compiling\n"
           f"travis_time:end:ab12:start=1,finish=2,duration=2500000000,event=install\r{E}[0K\n"
           f"travis_fold:end:install\r{E}[0K\n"
           f"travis_fold:start:script\r{E}[0K$ make test\n"
           'The command "make test" exited with 2.\n'
           f"travis_fold:end:script\r{E}[0K\n"
           f"travis_fold:start:cache\r{E}[0K$ upload cache\n")
    result = js.evaluate(MODEL, log)
    assert [strip(js, t) for t in result["text"]] == [
        "$ make install", "compiling", "$ make test", 'The command "make test" exited with 2.', "$ upload cache"]
    assert result["folds"] == [["install", 0, 1, False], ["script", 2, 3, True], ["cache", 4, None, True]]
    assert result["durations"] == [[0, 2500000000]]
