"""Help pages for people: plain text, prose wrapped between words, examples never wrapped.

click's formatter breaks long words (a policy path split across two lines) and rewraps an
example with the prose around it, so a copied example fails; typer escapes ``[`` in its
``[env var: …]`` and ``[required]`` notes for rich even when rich markup is off, so the
backslash is printed. This formatter is installed on every command (keyadmin.cli.main):

* prose paragraphs wrap at spaces only (no word is ever cut, no break at hyphens);
* an example (a paragraph starting "Example…:", and the indented command paragraphs after
  it) is printed as one line per command, its docstring continuation lines joined, never
  wrapped: the terminal may fold it on screen, but a copy is the exact command;
* option notes keep their brackets without the escaping backslash.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable

import click

# A line that starts a command in an example (anything else continues the previous one).
_COMMAND_START = re.compile(r"^(keyadmin|printf|TOKEN=|export|\w+=\S* keyadmin)\b")
_EXAMPLE_HEAD = re.compile(r"^(Examples?\b[^:]*:)\s*(.*)$")


def _wrap(text: str, width: int, indent: str) -> list[str]:
    return textwrap.wrap(
        text,
        width=max(width, len(indent) + 20),
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [""]


def _paragraphs(text: str) -> list[list[str]]:
    paras: list[list[str]] = [[]]
    for line in text.expandtabs().splitlines():
        if line.strip():
            paras[-1].append(line)
        elif paras[-1]:
            paras.append([])
    return [p for p in paras if p]


def _commands(lines: Iterable[str]) -> list[str]:
    """Example lines -> one string per command (continuation lines joined)."""
    cmds: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if cmds and not _COMMAND_START.match(line):
            cmds[-1] += " " + line
        else:
            cmds.append(line)
    return cmds


def help_blocks(text: str) -> list[tuple[str, list[str]]]:
    """Split a help text into ("prose", [paragraph]) and ("example", [head, cmd, cmd…])."""
    blocks: list[tuple[str, list[str]]] = []
    in_example = False
    for para in _paragraphs(text):
        first = para[0].strip()
        if first == "\b":
            blocks.append(("verbatim", para[1:]))
            in_example = False
            continue
        for i, line in enumerate(para):
            head = _EXAMPLE_HEAD.match(line.strip())
            if head:
                if i:
                    blocks.append(("prose", [" ".join(x.strip() for x in para[:i])]))
                blocks.append(
                    ("example", [head.group(1), *_commands([head.group(2), *para[i + 1 :]])])
                )
                in_example = True
                break
        else:
            if in_example and (_COMMAND_START.match(first) or first.startswith("--")):
                blocks[-1][1].extend(_commands(para))
            else:
                in_example = False
                blocks.append(("prose", [" ".join(x.strip() for x in para)]))
    return blocks


def first_sentence(text: str) -> str:
    """A command's line in its group's list: the first sentence of its help, whole."""
    paras = _paragraphs(text)
    first = " ".join(line.strip() for line in paras[0]) if paras else ""
    end = re.search(r"[.!?](\s|$)", first)
    return first[: end.start() + 1] if end else first


class HelpFormatter(click.HelpFormatter):
    def write_text(self, text: str) -> None:
        indent = " " * self.current_indent
        width = self.width or 80
        first = True
        for kind, lines in help_blocks(text):
            if not first:
                self.write_paragraph()
            first = False
            if kind == "prose":
                self.write("\n".join(_wrap(lines[0], width, indent)) + "\n")
            elif kind == "verbatim":
                self.write("".join(f"{indent}{line}\n" for line in lines))
            else:
                head, cmds = lines[0], lines[1:]
                self.write(f"{indent}{head}\n")
                self.write("".join(f"{indent}  {cmd}\n" for cmd in cmds))

    def write_dl(
        self, rows: Iterable[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
    ) -> None:
        rows = [(first, second.replace("\\[", "[")) for first, second in rows]
        widths = [len(first) for first, _ in rows]
        first_col = min(max(widths, default=0), col_max) + col_spacing
        width = self.width or 80
        indent = " " * self.current_indent
        for first, second in rows:
            self.write(f"{indent}{first}")
            if not second:
                self.write("\n")
                continue
            pad = " " * (self.current_indent + first_col)
            text_width = width - len(pad)
            if len(first) <= first_col - col_spacing:
                lines = _wrap(second, len(pad) + max(text_width, 20), pad)
                self.write(" " * (first_col - len(first)) + lines[0][len(pad) :] + "\n")
                self.write("".join(line + "\n" for line in lines[1:]))
            else:
                self.write("\n")
                lines = _wrap(second, len(pad) + max(text_width, 20), pad)
                self.write("".join(line + "\n" for line in lines))


class Context(click.Context):
    formatter_class = HelpFormatter
