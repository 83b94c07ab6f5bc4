"""One escaping layer per medium: the terminal and CI log, GitHub workflow commands, Markdown and HTML."""

from __future__ import annotations

import io
import re
import sys
import unicodedata
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_longeff.text import (
    GuardedStream,
    attribute,
    for_terminal,
    guarded_output,
    html_attr,
    html_text,
    markdown_cell,
    markdown_text,
    print_command,
    safe_lines,
    workflow_data,
    workflow_property,
)

PAYLOAD = "a\n::add-mask::pwned\r::error::x|y<img src=x onerror=alert(1)>"
# Every character str.splitlines() breaks at, and the controls a terminal acts on.
BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
# Any text, with the characters that matter here made likely.
PIECES = [*BREAKS, ":", "::", "#", "##[", " ", "\t", "|", "\\", "<", ">", "&", '"', "'", "\x1b", "1.", "-"]
TEXTS = st.lists(st.one_of(st.text(max_size=3), st.sampled_from(PIECES)), max_size=12).map("".join)


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


def _unescaped_pipes(value: str) -> list[int]:
    """Positions of the ``|`` that an odd number of backslashes does not precede."""
    out = []
    for m in re.finditer(r"\|", value):
        run = len(value[:m.start()]) - len(value[:m.start()].rstrip("\\"))
        if run % 2 == 0:
            out.append(m.start())
    return out


# -- terminal ---------------------------------------------------------------------------------------------------------
def test_for_terminal_replaces_each_control_by_its_visible_escape() -> None:
    assert for_terminal(PAYLOAD) == "a\\n::add-mask::pwned\\r::error::x|y<img src=x onerror=alert(1)>"
    assert for_terminal("a\tb\x00c\x1b[31md\x7fe\x85f\x9fg") == "a\\tb\\x00c\\x1b[31md\\x7fe\\x85f\\x9fg"
    assert for_terminal("p\u2028q\u2029r\u202es\u2066t\ud800u") == "p\\u2028q\\u2029r\\u202es\\u2066t\\ud800u"
    # The characters just outside the escaped ranges stay as they are.
    assert for_terminal(" ~\xa0\u2027\u202a\u202f\u2065\u206a\ue000") == " ~\xa0\u2027\\u202a\u202f\u2065\u206a\ue000"
    assert for_terminal("\x1f \x20 \x7e \xa0") == "\\x1f \x20 \x7e \xa0"
    assert for_terminal(None) == "None" and for_terminal(12) == "12"


def test_for_terminal_breaks_a_leading_workflow_command_and_every_v1_command() -> None:
    assert for_terminal("::error::x") == "\\::error::x"
    assert for_terminal(" \t::error::x") == " \\t::error::x"  # the tab is escaped first: no longer whitespace
    assert for_terminal("   ::set-output name=a::b") == "   \\::set-output name=a::b"
    assert for_terminal("a ::error::x") == "a ::error::x"  # not at a line's start: the runner ignores it
    assert for_terminal("x ##[add-mask]y ##[error]z") == "x ##\\[add-mask]y ##\\[error]z"
    assert for_terminal(":x") == ":x" and for_terminal("#[") == "#["


@given(TEXTS)
def test_for_terminal_output_is_one_line_without_controls(value: str) -> None:
    out = for_terminal(value)
    assert not any(_is_control(c) or c in "\u2028\u2029" for c in out)
    assert len(out.splitlines()) <= 1
    assert not out.lstrip().startswith("::") and "##[" not in out
    out.encode("utf-8")  # no lone surrogate left


def test_safe_lines_keeps_lines_and_tabs_and_breaks_commands() -> None:
    block = "head\n::error::x\n  ::add-mask::y\n\tz ##[warning]w\n"
    assert safe_lines(block) == "head\n\\::error::x\n  \\::add-mask::y\n\tz ##\\[warning]w\n"
    assert safe_lines("::a\n\n\n   ::b") == "\\::a\n\n\n   \\::b"
    assert safe_lines(PAYLOAD) == "a\n\\::add-mask::pwned\\r::error::x|y<img src=x onerror=alert(1)>"
    assert safe_lines("a\u2028::b\x85::c\x1b[2K") == "a\\u2028::b\\x85::c\\x1b[2K"
    assert safe_lines("x\x08\x0b\x0c\x1f") == "x\\x08\\x0b\\x0c\\x1f"
    assert safe_lines("") == "" and safe_lines("a ::b") == "a ::b"


@given(TEXTS)
def test_safe_lines_output_has_no_line_that_starts_a_workflow_command(value: str) -> None:
    out = safe_lines(value)
    # The runner reads lines at \r and \n; Python's splitlines() breaks at more characters still.
    for line in [*out.splitlines(), *re.split(r"[\r\n]", out)]:
        assert not line.lstrip().startswith("::")
    assert "##[" not in out
    assert not any(_is_control(c) and c not in "\n\t" for c in out)


# -- GitHub workflow commands -----------------------------------------------------------------------------------------
def test_workflow_data_and_property_escape_as_githubs_toolkit_does() -> None:
    assert workflow_data("100% a\r\nb: c, d") == "100%25 a%0D%0Ab: c, d"
    assert workflow_property("100% a\r\nb: c, d") == "100%25 a%0D%0Ab%3A c%2C d"
    assert workflow_data("%0A") == "%250A"  # the escape itself is escaped first: it round-trips


# -- Markdown ---------------------------------------------------------------------------------------------------------
def test_markdown_cell_escapes_table_html_and_inline_syntax() -> None:
    assert markdown_cell(PAYLOAD) == "a ::add-mask::pwned ::error::x\\|y&lt;img src=x onerror=alert(1)&gt;"
    assert markdown_cell("a\r\nb\rc\u2028d") == "a b c d"
    assert markdown_cell("`code` [link](http://x) ![i](y) *em* ~s~ a\\|b") == (
        "\\`code\\` \\[link\\](http://x) !\\[i\\](y) \\*em\\* \\~s\\~ a\\\\\\|b")
    assert markdown_cell("&amp; <b>") == "&amp;amp; &lt;b&gt;"
    assert markdown_cell("# x") == "# x" and markdown_cell("-60.0%") == "-60.0%"  # inline text in a cell
    assert markdown_cell("  gov_report \x1b ") == "gov_report \\\\x1b"
    assert markdown_cell(None) == "None"


def test_markdown_text_escapes_a_leading_block_marker() -> None:
    for raw, escaped in (("# h", "\\# h"), ("- l", "\\- l"), ("+ l", "\\+ l"), ("= u", "\\= u"),
                         ("12. n", "12\\. n"), ("3) n", "3\\) n"), ("    code", "code"), ("> q", "&gt; q")):
        assert markdown_text(raw) == escaped, raw
    assert markdown_text("a # b - c 1. d") == "a # b - c 1. d"
    assert markdown_text(PAYLOAD) == markdown_cell(PAYLOAD)


@given(TEXTS)
def test_markdown_cell_output_stays_in_its_cell(value: str) -> None:
    out = markdown_cell(value)
    assert _unescaped_pipes(out) == []
    assert not any(c in out for c in BREAKS) and not any(_is_control(c) for c in out)
    assert not re.search(r"<|>|&(?!amp;|lt;|gt;)", out)
    assert not re.search(r"(?<!\\)`", out.replace("\\\\", ""))


@given(TEXTS)
def test_markdown_text_output_is_one_line_of_inline_text(value: str) -> None:
    out = markdown_text(value)
    assert len(out.splitlines()) <= 1 and _unescaped_pipes(out) == []
    assert not re.match(r"[#=+-]|\d+[.)]|\s", out)


# -- HTML -------------------------------------------------------------------------------------------------------------
def test_html_text_and_attr_escape_every_special_character() -> None:
    assert html_text('<b a="1">&\'') == "&lt;b a=&quot;1&quot;&gt;&amp;&#x27;"
    assert html_attr('x" onerror="alert(1)\'<>&') == "x&quot; onerror=&quot;alert(1)&#x27;&lt;&gt;&amp;"
    assert attribute("data-task", 'x" onerror="y') == ' data-task="x&quot; onerror=&quot;y"'
    with pytest.raises(ValueError) as info:
        attribute("on error", "x")
    assert str(info.value) == ("attribute name 'on error': expected lower-case letters, digits and '-', starting with "
                               "a letter; attribute names come from the project, never from a report")
    with pytest.raises(ValueError, match="attribute name"):
        attribute("Title", "x")
    with pytest.raises(ValueError, match="attribute name"):
        attribute("1a", "x")


@given(TEXTS)
def test_html_attr_output_holds_specials_only_as_entities(value: str) -> None:
    out = html_attr(value)
    assert not re.search(r"[\"'<>]|&(?!amp;|lt;|gt;|quot;|#x27;)", out)

    class Attrs(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.found.append((tag, attrs))

    parser = Attrs()
    parser.feed(f"<p{attribute('title', value)}>")
    parser.close()
    assert parser.found == [("p", [("title", value)])]


# -- the command line's last guard ------------------------------------------------------------------------------------
def test_the_guarded_stream_holds_a_line_until_it_ends() -> None:
    inner = io.StringIO()
    out = GuardedStream(inner)
    out.write(":")
    out.flush()
    assert inner.getvalue() == ""  # a lone ":" could be the start of "::"
    out.write(":error::x\n  ")
    assert inner.getvalue() == "\\::error::x\n"
    out.write("::y")
    out.command("::error title=t::m")
    out.write("a\n::b\nc")
    assert inner.getvalue().endswith("::error title=t::m\na\n\\::b\n")  # every line completed, at once
    assert out.write("::z") == 3
    out.finish()
    out.finish()
    out.write("")  # nothing held after finishing: an empty write writes nothing
    assert inner.getvalue() == "\\::error::x\n  \\::y\n::error title=t::m\na\n\\::b\nc::z"
    assert out.getvalue() == inner.getvalue()  # the rest is the inner stream's


def test_guarded_output_guards_both_streams_and_print_command_passes(capsys: pytest.CaptureFixture[str]) -> None:
    with guarded_output():
        print("::add-mask::x")
        print("::error::y", file=sys.stderr, end="")
        print_command("::error title=t::z")
        assert isinstance(sys.stdout, GuardedStream)
    assert not isinstance(sys.stdout, GuardedStream)
    got = capsys.readouterr()
    assert got.out == "\\::add-mask::x\n::error title=t::z\n" and got.err == "\\::error::y"
    print_command("::notice::n")
    assert capsys.readouterr().out == "::notice::n\n"
