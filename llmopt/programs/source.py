"""Program text: the part the model may change, code found in a reply, and edits applied to a parent.

A program problem's solution is the text of its *block*: the lines between the markers
``# EVOLVE-BLOCK-START`` and ``# EVOLVE-BLOCK-END`` of the initial program (FunSearch's
``@funsearch.evolve``, OpenEvolve's EVOLVE-BLOCK), or the whole program when it has none. The
rest of the program is fixed: :class:`Template` puts a block back into it.

A reply holds a new block in one of two forms, and nothing here raises anything but
:class:`~llmopt.problem.ParseError` on any text:

* a fenced code block (```` ```python ... ``` ````; a reply that repeats the whole program with
  its markers gives the part between them);
* SEARCH/REPLACE edits of the parent shown to the model (aider's and OpenEvolve's format)::

      <<<<<<< SEARCH
      lines of the parent, exactly
      =======
      their replacement
      >>>>>>> REPLACE
"""

from __future__ import annotations

import ast
import difflib
import re
import textwrap
from dataclasses import dataclass

from llmopt.problem import ParseError

START = "# EVOLVE-BLOCK-START"
END = "# EVOLVE-BLOCK-END"
#: Longest reply or program considered (characters): beyond it a reply is refused, never parsed.
MAX_CHARS = 200_000

_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[ \t]*$", re.MULTILINE)
_EDIT = re.compile(r"^[ \t]*<{5,9}[ \t]*SEARCH[ \t]*\n(.*?)^[ \t]*={5,9}[ \t]*\n(.*?)^[ \t]*>{5,9}[ \t]*REPLACE[ \t]*$",
                   re.MULTILINE | re.DOTALL)


def normalize(block: str) -> str:
    """A block as stored: trailing spaces cut from every line, no blank lines before or after, one final newline."""
    lines = [line.rstrip() for line in block.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


@dataclass(frozen=True)
class Template:
    """A program cut at its markers: ``prefix + block + suffix`` is the program (the markers stay
    in prefix and suffix, so a candidate's program reads as the initial one does)."""

    prefix: str
    block: str
    suffix: str

    @classmethod
    def of(cls, program: str) -> "Template":
        """Cut ``program`` at its one pair of markers (none: the whole program is the block).
        Raises ValueError naming what is wrong with the markers."""
        text = program.replace("\r\n", "\n")
        starts, ends = _marker_lines(text, START), _marker_lines(text, END)
        if not starts and not ends:
            return cls("", normalize(text), "")
        if len(starts) != 1 or len(ends) != 1:
            raise ValueError(f"the program must have exactly one {START} line and one {END} line "
                             f"(it has {len(starts)} and {len(ends)})")
        lines = text.split("\n")
        (s,), (e,) = starts, ends
        if e < s:
            raise ValueError(f"{END} comes before {START} (lines {e + 1} and {s + 1})")
        prefix = "\n".join(lines[:s + 1]) + "\n"
        suffix = "\n".join(lines[e:])
        return cls(prefix, normalize("\n".join(lines[s + 1:e])), suffix if suffix.endswith("\n") else suffix + "\n")

    @property
    def marked(self) -> bool:
        return bool(self.prefix or self.suffix)

    def program(self, block: str) -> str:
        """The whole program with ``block`` in place of the initial one."""
        return f"{self.prefix}{block}{self.suffix}"


def _marker_lines(text: str, marker: str) -> list[int]:
    return [i for i, line in enumerate(text.split("\n")) if line.strip() == marker]


def code_in(reply: str) -> str:
    """The code of a reply: its longest fenced block (an unclosed fence at the end counts: a reply
    cut off at max tokens), or the reply itself when it has no fence but parses as Python; the part
    between the markers if the model repeated them. Raises ParseError."""
    if len(reply) > MAX_CHARS:
        raise ParseError(f"the reply is {len(reply)} characters long (at most {MAX_CHARS} are read)")
    fences = list(_FENCE.finditer(reply))
    blocks = [reply[a.end():b.start()] for a, b in zip(fences[::2], fences[1::2])]
    if len(fences) % 2:
        blocks.append(reply[fences[-1].end():])
    code = max(blocks, key=len, default=None)
    if code is None:
        if not _parses(reply):
            raise ParseError("the reply has no code: write the program in a ```python fenced block")
        code = reply
    if START in code and END in code:
        try:
            code = Template.of(code).block
        except ValueError as exc:
            raise ParseError(f"the code's markers: {exc}") from None
    code = normalize(code)
    if not code.strip():
        raise ParseError("the reply's code block is empty")
    return code


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return bool(text.strip())


def edits_in(reply: str) -> list[tuple[str, str]]:
    """The SEARCH/REPLACE edits of a reply, in order (none: the reply holds no edit)."""
    if len(reply) > MAX_CHARS:
        raise ParseError(f"the reply is {len(reply)} characters long (at most {MAX_CHARS} are read)")
    return [(m.group(1), m.group(2)) for m in _EDIT.finditer(reply.replace("\r\n", "\n"))]


def apply_edits(parent: str, edits: list[tuple[str, str]]) -> str:
    """``parent`` with every edit applied in turn: each SEARCH text must occur in the text so far
    (exactly, or else line by line with trailing spaces ignored); its first occurrence is replaced.
    Raises ParseError naming the edit that does not apply."""
    text = parent
    for i, (search, replace) in enumerate(edits, 1):
        if not search.strip():
            raise ParseError(f"edit {i} has an empty SEARCH part")
        at = text.find(search)
        if at >= 0:
            text = text[:at] + replace + text[at + len(search):]
            continue
        lines, want = text.split("\n"), [line.rstrip() for line in search.rstrip("\n").split("\n")]
        stripped = [line.rstrip() for line in lines]
        hit = next((j for j in range(len(lines) - len(want) + 1) if stripped[j:j + len(want)] == want), None)
        if hit is None:
            first = next((line.strip() for line in want if line.strip()), "")[:80]
            raise ParseError(f"edit {i} does not apply: its SEARCH text is not in the parent program "
                             f"(it starts {first!r})")
        text = "\n".join(lines[:hit] + replace.rstrip("\n").split("\n") + lines[hit + len(want):])
    return normalize(text)


def syntax_error(program: str) -> str | None:
    """One line saying why ``program`` does not parse as Python (None: it parses)."""
    try:
        ast.parse(program)
    except SyntaxError as exc:
        return f"line {exc.lineno}: {exc.msg}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return None


def canonical(program: str) -> str:
    """What identifies a program's behaviour for de-duplication: its syntax tree, so two programs
    that differ only in comments, blank lines or layout are one (the text if it does not parse)."""
    try:
        return ast.dump(ast.parse(program))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return program


def normalized(block: str) -> str:
    """A block as novelty filtering compares it (:mod:`llmopt.novelty`): its syntax tree unparsed,
    so comments, blank lines and layout do not count (a block indented as a function's body is
    dedented first); a block that does not parse alone loses its comment lines and blank lines."""
    text = textwrap.dedent(block)
    try:
        return ast.unparse(ast.parse(text))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        lines = [line.rstrip() for line in text.splitlines()]
        return "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith("#"))


def diff(parent: str, child: str, *, names: tuple[str, str] = ("parent", "candidate")) -> str:
    """A unified diff of two blocks (empty when they are the same)."""
    lines = difflib.unified_diff(parent.splitlines(keepends=True), child.splitlines(keepends=True),
                                 fromfile=names[0], tofile=names[1], n=2)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
