"""Strings from a report file or from the user, made safe for the medium they are written to: one function per
medium, each saying exactly what it guarantees.

Reports travel between machines (shard artifacts, a baseline from another branch), so a cell id, a task name, a
reason or a path may hold anything: a line break followed by ``::add-mask::`` (a GitHub Actions workflow command,
which the runner executes when a line of the job's log starts with ``::`` after leading whitespace, or holds
``##[`` anywhere), an escape sequence that colours the terminal, a ``|`` that splits a Markdown table, or HTML.
Every layer that writes such a string passes it through the function of its medium here:

* a terminal or a workflow log: :func:`for_terminal` per value, and :func:`safe_lines` over a whole block the
  project prints (the last guard of the command line, see :func:`guarded_output`);
* a GitHub workflow command the project emits on purpose: :func:`workflow_data` and :func:`workflow_property`;
* Markdown: :func:`markdown_cell` inside a table, :func:`markdown_text` for a line of prose;
* HTML: :func:`html_text` between tags, :func:`html_attr` (or :func:`attribute`) inside a double-quoted attribute.

None of the functions is meant to be undone: a reader sees what the string held, the machine reading the medium
never takes it for structure.
"""

from __future__ import annotations

import contextlib
import html
import re
import sys
from collections.abc import Iterator
from typing import Any, TextIO

# C0 controls, DEL, C1 controls, the Unicode line and paragraph separators, the bidirectional embedding, override
# and isolate controls (they make a line display as other text), and lone surrogates (JSON may hold them; no
# encoder writes them).
_OTHERS = "\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[\x00-\x1f{_OTHERS}]")
_UNSAFE_IN_BLOCK = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHERS}]")  # a block keeps its tabs and "\n" line breaks
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# A workflow command: a line that starts with "::" once its leading whitespace is trimmed. Python's \s holds every
# character .NET's TrimStart removes. In a block, lines end only at "\n" (every other break is escaped first).
_COMMAND_START = re.compile(r"(^|\n)(\s*)(?=::)")
_V1_COMMAND = "##["


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def _commands_broken(text: str) -> str:
    return _COMMAND_START.sub(r"\1\2\\", text).replace(_V1_COMMAND, "##\\[")


def for_terminal(value: Any) -> str:
    """``str(value)`` for one line of a terminal or a CI log. Guarantees: the result holds no control character
    (C0, DEL, C1), no Unicode line or paragraph separator (U+2028, U+2029), no bidirectional control (U+202A to
    U+202E, U+2066 to U+2069) and no lone surrogate: each is replaced by a visible escape (``\\n``, ``\\r``,
    ``\\t``, ``\\x1b``, ``\\u2028``...), so the string can never start a new line, move the cursor or colour the
    terminal. It does not start, after leading whitespace, with ``::``, and holds no ``##[``: a backslash goes
    before such a ``::`` and before the ``[`` (``\\::``, ``##\\[``), so GitHub Actions never reads it as a
    workflow command. A backslash already in the string is kept as is (the result is for reading, not for
    unescaping)."""
    return _commands_broken(_UNSAFE.sub(_visible, str(value)))


def safe_lines(text: str) -> str:
    """A whole block the project prints (a table, a message of several lines), made safe for a terminal and a CI
    log. Guarantees: the result's only line break is ``\\n``; it holds no other control character but the tab,
    no Unicode line or paragraph separator, no bidirectional control and no lone surrogate (each replaced by its
    visible escape, as :func:`for_terminal` does: a ``\\r`` from a report cannot return to the start of a line);
    no line of it starts, after leading whitespace, with ``::`` (a backslash is inserted before the ``::``:
    ``  \\::error``), and it holds no ``##[`` (written ``##\\[``). Lines are otherwise unchanged."""
    return _commands_broken(_UNSAFE_IN_BLOCK.sub(_visible, text))


# -- GitHub workflow commands ----------------------------------------------------------------------------------------
def workflow_data(text: str) -> str:
    """``text`` as the message of a workflow command (after the second ``::``), as GitHub's toolkit escapes it:
    ``%`` is ``%25``, ``\\r`` is ``%0D``, ``\\n`` is ``%0A``; the runner turns them back, so the message shows as
    given and cannot end the command's line."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def workflow_property(text: str) -> str:
    """``text`` as a property value of a workflow command (``title=...``): :func:`workflow_data`, and ``:`` is
    ``%3A`` and ``,`` is ``%2C``, so the value can neither end the properties (``::``) nor start another one."""
    return workflow_data(text).replace(":", "%3A").replace(",", "%2C")


# -- Markdown --------------------------------------------------------------------------------------------------------
_MARKDOWN_BREAKS = re.compile("\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_MARKDOWN_PUNCTUATION = re.compile(r"[\\`|\[\]*~]")
_BLOCK_MARKER = re.compile(r"^(?:[#>+=-]|\d+[.)])")


def markdown_cell(value: Any) -> str:
    """``str(value)`` as one cell of a GitHub-flavoured Markdown table. Guarantees: no line break (each of
    ``\\r\\n``, ``\\n``, ``\\r`` and the other Unicode line breaks becomes one space); no other control character
    (visible escapes, as :func:`for_terminal` writes them); no unescaped ``|`` (written ``\\|``), so the row keeps
    its cells; no raw HTML (``&``, ``<``, ``>`` become ``&amp;``, ``&lt;``, ``&gt;``); backslash, backtick, ``[``,
    ``]``, ``*`` and ``~`` backslash-escaped, so no code span, link, image, emphasis by ``*`` or strikethrough can
    start. ``_`` is left as is: GitHub never emphasises inside a word, and escaping it would clutter every cell
    id. A leading ``#`` or ``-`` needs nothing: a table cell holds inline text only. Leading and trailing
    whitespace is dropped, as the table would drop it."""
    text = for_terminal(_MARKDOWN_BREAKS.sub(" ", str(value)))
    text = _MARKDOWN_PUNCTUATION.sub(r"\\\g<0>", text)
    return html.escape(text, quote=False).strip()


def markdown_text(value: Any) -> str:
    """``str(value)`` as (part of) one line of Markdown prose, a list item's text or a paragraph. Guarantees: all
    of :func:`markdown_cell`'s, and the result does not start with a block marker (``#`` heading, ``-``/``+``
    list, ``=`` underline, ``>`` quote, ``1.``/``1)`` numbered list): a backslash goes before it. Leading
    whitespace is dropped, so it cannot make an indented code block either."""
    text = markdown_cell(value)
    return _BLOCK_MARKER.sub(lambda m: m.group()[:-1] + "\\" + m.group()[-1], text)


# -- HTML ------------------------------------------------------------------------------------------------------------
_ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9-]*")


def html_text(value: Any) -> str:
    """``str(value)`` as text between HTML tags. Guarantees: ``&``, ``<`` and ``>`` become ``&amp;``, ``&lt;``,
    ``&gt;``, so the text can start no tag, comment or character reference; ``"`` and ``'`` become ``&quot;`` and
    ``&#x27;`` too (not needed between tags, but a value written there stays harmless if a later edit moves it into
    an attribute)."""
    return html.escape(str(value), quote=True)


def html_attr(value: Any) -> str:
    """``str(value)`` as an HTML attribute value, always written inside double quotes (:func:`attribute` writes
    both). Guarantees: ``&``, ``<``, ``>``, ``"`` and ``'`` become ``&amp;``, ``&lt;``, ``&gt;``, ``&quot;`` and
    ``&#x27;``, so the value can end neither its quotes nor its tag (the escaping of :func:`html_text`)."""
    return html_text(value)


def attribute(name: str, value: Any) -> str:
    """`` name="value"``: one HTML attribute, its value always quoted and escaped by :func:`html_attr`. ``name`` is
    the project's own (lower-case letters, digits and ``-``); any other name is a ValueError."""
    if not _ATTRIBUTE_NAME.fullmatch(name):
        raise ValueError(f"attribute name {name!r}: expected lower-case letters, digits and '-', starting with a "
                         "letter; attribute names come from the project, never from a report")
    return f' {name}="{html_attr(value)}"'


# -- the command line's last guard -----------------------------------------------------------------------------------
class GuardedStream:
    """A text stream that writes to ``inner`` through :func:`safe_lines`, a whole line at a time: a line is held
    until its ``\\n`` (or :meth:`finish`), so a ``::`` cannot slip through by being written in pieces. Workflow
    commands the project emits on purpose go through :meth:`command`. Everything else is the inner stream's."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner
        self._pending = ""

    def write(self, text: str) -> int:
        """Take ``text``; write every line it completes, made safe."""
        self._pending += text
        end = self._pending.rfind("\n") + 1
        if end:
            self.inner.write(safe_lines(self._pending[:end]))
            self._pending = self._pending[end:]
        return len(text)

    def finish(self) -> None:
        """Write the line still held (one without its ``\\n``), made safe."""
        if self._pending:
            self.inner.write(safe_lines(self._pending))
            self._pending = ""

    def command(self, line: str) -> None:
        """Write ``line``, a workflow command the project made (its values escaped by :func:`workflow_data` and
        :func:`workflow_property`), as it is, on a line of its own (a line still held is ended first)."""
        if self._pending:
            self.write("\n")
        self.inner.write(line + "\n")

    def flush(self) -> None:
        """Flush the inner stream (a line still held stays held: it is not safe to write until it ends)."""
        self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def print_command(line: str) -> None:
    """Print ``line``, a workflow command the project made, to standard output: as it is, past the guard of
    :func:`guarded_output` when one is in place."""
    out: Any = sys.stdout
    if isinstance(out, GuardedStream):
        out.command(line)
    else:
        print(line)


@contextlib.contextmanager
def guarded_output() -> Iterator[None]:
    """Standard output and standard error through :class:`GuardedStream` while the block runs: the last guard on
    everything a command prints."""
    out, err = GuardedStream(sys.stdout), GuardedStream(sys.stderr)
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out.inner, err.inner
        out.finish()
        err.finish()
