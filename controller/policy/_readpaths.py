"""What a CEL rule reads: the read-path analysis of its source text.

The CEL library's Python bindings expose no syntax tree, so the analysis
works on the source with the string literals and comments blanked out
(``celenv`` refuses the forms it cannot read: leading-dot and
backtick-quoted names). It is fail-safe by construction: when a use of a
variable is anything but a plain field path (passed whole to a
function, iterated, indexed with a computed key), the answer is "reads it
whole" (``None`` paths, ``reads_whole_object``). Over-approximating only
costs speed (more is converted into CEL values, more is probed for
unknowns); under-approximating would change verdicts, which the
trimming-equivalence tests rule out.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_FIELD_RE = re.compile(r"\.\s*([A-Za-z_][A-Za-z0-9_]*)")
# CEL's string literals (triple-quoted first, so that three quotes are not
# read as an empty string and a quote), its backtick-quoted names and its
# comments (``//`` to the end of the line), read left to right as its lexer
# reads them: a quote inside a comment, or ``//`` inside a string or a
# quoted name, is not what it would be on its own.
_LEXEME_RE = re.compile(
    r"(?P<string>'''(?:[^\\]|\\.)*?'''" + r'|"""(?:[^\\]|\\.)*?"""'
    r"|'(?:[^'\\]|\\.)*'" + r'|"(?:[^"\\]|\\.)*")'
    r"|(?P<quoted>`[^`\n]*`)"
    r"|(?P<comment>//[^\n]*)",
    re.DOTALL,
)
_PATH_LITERAL_RE = re.compile(r"[A-Za-z_]\w*(?:\.\w+)*")


def string_literals(source: str) -> list[str]:
    """The text between the quotes of each string literal of ``source``."""
    found = []
    for match in _LEXEME_RE.finditer(source):
        text = match.group("string")
        if text is not None:
            quotes = 3 if len(text) >= 6 and text[:3] in ("'''", '"""') else 1
            found.append(text[quotes:-quotes])
    return found


def words(source: str) -> set[str]:
    """Field names read (``.name``), plus the first segment of string literals
    shaped like a field path (``'acl'``, ``'a.b.0'``), which ``lookup`` and
    ``in`` read."""
    # Field reads only (``.name``): loop variables and function names are not
    # attributes of the object, and counting them would probe needlessly.
    words = set(_FIELD_RE.findall(blank_strings(source)))
    for text in string_literals(source):
        if _PATH_LITERAL_RE.fullmatch(text):
            words.add(text.split(".", 1)[0])
    return words


# A use of the new object other than a plain field read or a null check.
_OBJECT_USE_RE = re.compile(r"\b(?:object|after)\b")
_FIELD_READ_RE = re.compile(r"\s*\.\s*[A-Za-z_]\w*(?!\w)(?!\s*\()")
_NULL_CHECK_RE = re.compile(r"\s*[!=]=\s*null\b")
# ``lookup(after, 'a.b', default)``: a field read whose path is a literal.
_LITERAL_LOOKUP_RE = re.compile(r"""\s*,\s*(?:'[^'\\]*'|"[^"\\]*")""")
_LOOKUP_CALL_RE = re.compile(r"\blookup\s*\(\s*$")


# Variables that hold (parts of) the object and are worth trimming; also
# ``resource`` and ``request``, whose names and addresses few rules read and
# which would otherwise make every subject's content different.
TRIMMED_VARIABLES = ("object", "after", "oldObject", "before", "podSpec", "resource", "request")
# List variables whose elements are trimmed to what comprehensions read.
TRIMMED_LISTS = ("containers",)
_BINDING_BEFORE_RE = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*$")
_CHAIN_RE = re.compile(r"(?:\s*\.\s*[A-Za-z_]\w*(?!\w)(?!\s*\())*")
_CHAIN_FIELD_RE = re.compile(r"[A-Za-z_]\w*")
_LOOKUP_PATH_RE = re.compile(r"""\s*,\s*(?:'([^'\\]*)'|"([^"\\]*)")""")
# The last segment of a path read only for presence (``has(c.a.b)``,
# ``c.a.b != null``): the value is kept as an empty stand-in of its kind,
# so only whether it is there, and whether it is null, survives trimming.
# A real key of this name is kept whole, which only keeps more.
PRESENCE = "\x00presence"
_HAS_BEFORE_RE = re.compile(r"\bhas\s*\(\s*$")
_CLOSE_RE = re.compile(r"\s*\)")
# What may stand before an operand of ``!=``/``==`` without taking it as its
# own operand (``x + c.a != null`` reads ``c.a`` whole).
_OPERAND_START_RE = re.compile(r"(?:^|[(\[,?:]|&&|\|\|)\s*$")
# ``null ==`` at the start of an operand, and what may end that operand.
_NULL_FIRST_RE = re.compile(r"(?:^|[(\[,?:]|&&|\|\|)\s*null\s*[!=]=\s*$")
_OPERAND_END_RE = re.compile(r"\s*(?:$|[)\],?:]|&&|\|\|)")


def blank_strings(source: str) -> str:
    """String literals blanked to spaces (a quote kept at each end) and
    comments to spaces, positions unchanged; quoted names are kept."""
    return _LEXEME_RE.sub(_blank, source)


def _blank(match: re.Match[str]) -> str:
    text = match.group(0)
    if match.group("quoted") is not None:
        return text
    if match.group("comment") is not None:
        return " " * len(text)
    return text[0] + " " * (len(text) - 2) + text[-1]


def access_paths(source: str, name: str) -> frozenset[tuple[str, ...]] | None:
    """The field paths through which ``source`` reads variable ``name``.

    A select chain (``object.spec.replicas``), a literal ``lookup`` path, or a
    null check; anything else (the variable passed whole to a function,
    iterated, compared, indexed with a computed key at its top) gives None.
    """
    blank = blank_strings(source)
    paths: set[tuple[str, ...]] = set()
    for use in re.finditer(rf"\b{re.escape(name)}\b", blank):
        before = blank[: use.start()].rstrip()
        if before.endswith("."):
            continue  # a field that happens to have the variable's name
        rest = blank[use.end() :]
        if _BINDING_BEFORE_RE.search(before + " ") and re.match(r"\s*,", rest):
            continue  # where a comprehension binds the name, not a use
        chain = _CHAIN_RE.match(rest)
        fields = tuple(_CHAIN_FIELD_RE.findall(chain.group(0))) if chain else ()
        if fields and chain is not None:
            paths.add(_chain_path(source, blank, use, chain.end(), fields))
            continue
        if _NULL_CHECK_RE.match(rest) or re.search(r"null\s*[!=]=\s*$", before):
            continue
        literal = _LOOKUP_PATH_RE.match(source[use.end() :])
        if literal and _LOOKUP_CALL_RE.search(blank[: use.start()]):
            # A list index ends the path: the list is kept whole.
            prefix = tuple(_take_while_names((literal.group(1) or literal.group(2)).split(".")))
            if prefix:
                paths.add(prefix)
                continue
        return None
    return frozenset(paths)


_MACRO_RE = re.compile(r"\s*\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_TWO_VARIABLE_MACRO_RE = re.compile(r"\s*\.\s*\w+\s*\(\s*\w+\s*,\s*\w+\s*,")


def element_paths(source: str, name: str) -> frozenset[tuple[str, ...]] | None:
    """The field paths read from each element of list variable ``name``.

    Only when every use is a comprehension (``containers.all(c, ...)``);
    then every select chain on the bound names anywhere in the rule counts
    (over-counting is safe, it only keeps more). Anything else gives None.
    """
    blank = blank_strings(source)
    bound: set[str] = set()
    for use in re.finditer(rf"\b{re.escape(name)}\b", blank):
        if blank[: use.start()].rstrip().endswith("."):
            continue
        rest = blank[use.end() :]
        macro = _MACRO_RE.match(rest)
        if macro is None or _TWO_VARIABLE_MACRO_RE.match(rest):
            return None
        bound.add(macro.group(1))
    return union_paths(*(access_paths(source, variable) for variable in bound))


def _chain_path(
    source: str, blank: str, use: re.Match[str], chain_end: int, fields: tuple[str, ...]
) -> tuple[str, ...]:
    """The path a select chain on a variable reads: the chain itself, the
    chain and a literal ``lookup`` path after it (``lookup(c.resources,
    'limits.cpu', '')``), or the chain for presence only."""
    before = blank[: use.start()]
    after = blank[use.end() + chain_end :]
    literal = _LOOKUP_PATH_RE.match(source[use.end() + chain_end :])
    if literal and _LOOKUP_CALL_RE.search(before):
        # A list index ends the path: the list is kept whole.
        return fields + tuple(_take_while_names((literal.group(1) or literal.group(2)).split(".")))
    if _HAS_BEFORE_RE.search(before) and _CLOSE_RE.match(after):
        return (*fields, PRESENCE)
    if _OPERAND_START_RE.search(before) and _NULL_CHECK_RE.match(after):
        return (*fields, PRESENCE)
    if _NULL_FIRST_RE.search(before) and _OPERAND_END_RE.match(after):
        return (*fields, PRESENCE)
    return fields


def _take_while_names(parts: Sequence[str]) -> list[str]:
    names: list[str] = []
    for part in parts:
        if not part or part.isdigit():
            break
        names.append(part)
    return names


def union_paths(
    *sets: frozenset[tuple[str, ...]] | None,
) -> frozenset[tuple[str, ...]] | None:
    if any(found is None for found in sets):
        return None
    return frozenset().union(*sets)  # type: ignore[arg-type]


# The read paths of a variable as a tree: each key's subtree, or None where
# the value is kept whole.
Trie = dict[str, "Trie | None"]


def prune(value: Any, paths: frozenset[tuple[str, ...]] | set[tuple[str, ...]]) -> Any:
    """``value`` with only the given paths (each end kept whole)."""
    return prune_trie(value, path_trie(frozenset(paths)))


@functools.lru_cache(maxsize=4096)
def path_trie(paths: frozenset[tuple[str, ...]]) -> Trie | None:
    """The paths as a tree, worked out once per set of paths (a plan's)."""
    root: Trie = {}
    for path in sorted(paths, key=len):
        node: Trie | None = root
        for part in path:
            if node is None:
                break  # a shorter path already keeps this whole
            child = node.setdefault(part, {})
            node = child
        else:
            if not path:
                return None
            _keep_whole(root, path)
    return root


def _keep_whole(root: Trie, path: tuple[str, ...]) -> None:
    node = root
    for part in path[:-1]:
        child = node[part]
        if child is None:
            return
        node = child
    node[path[-1]] = None


def prune_trie(value: Any, trie: Trie | None) -> Any:
    """``value`` with only the paths of ``trie`` (see ``path_trie``)."""
    # Values come from JSON (dicts); the ABC check is the slow path.
    if trie is None or (type(value) is not dict and not isinstance(value, Mapping)):
        return value
    return {
        key: value[key] if sub is None else prune_trie(value[key], sub)
        for key, sub in trie.items()
        if key in value
    }


# A plan's unknown paths repeat from resource to resource (``id``, ``arn``,
# ``ingress.0.id``), and each is tested against the same few sets of read
# paths for the contexts and for every rule: the answers are remembered.
@functools.lru_cache(maxsize=16384)
def overlaps(paths: frozenset[tuple[str, ...]], dotted: str) -> bool:
    """Whether a read path is a prefix of ``dotted`` or lies inside it."""
    parts = tuple(part for part in dotted.split(".") if part)
    reads, inside = _path_index(paths)
    # A read path is a prefix of ``parts``, or ``parts`` is a prefix of one:
    # set lookups instead of comparing with every read path (run for every
    # unknown value of every resource of a plan).
    return parts in inside or any(parts[:n] in reads for n in range(len(parts) + 1))


@functools.lru_cache(maxsize=4096)
def _path_index(
    paths: frozenset[tuple[str, ...]],
) -> tuple[frozenset[tuple[str, ...]], frozenset[tuple[str, ...]]]:
    """The read paths, and every prefix of them (frozensets cache their hash)."""
    return paths, frozenset(read[:n] for read in paths for n in range(len(read) + 1))


def reads_whole_object(source: str) -> bool:
    """Whether ``source`` may read the new object other than field by field."""
    # The word "object" inside a string literal is not a use of the variable.
    source = blank_strings(source)
    for use in _OBJECT_USE_RE.finditer(source):
        rest = source[use.end() :]
        before = source[: use.start()].rstrip()
        if before.endswith("."):
            continue  # a field that happens to be called "object" or "after"
        if _FIELD_READ_RE.match(rest) or _NULL_CHECK_RE.match(rest):
            continue
        if _LOOKUP_CALL_RE.search(source[: use.start()]) and _LITERAL_LOOKUP_RE.match(rest):
            continue
        if re.search(r"null\s*[!=]=\s*$", before):
            continue
        return True
    return False


_NUMBER_RE = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
_KEYWORD_RE = re.compile(r"\b(true|false|null)\b")
# How many of a rule's literals are tried as stand-ins for an unknown value.
MAX_LITERALS = 16


def literals(source: str) -> tuple[Any, ...]:
    """The constants a rule compares against (strings, numbers, booleans,
    null), in order of appearance: the values an unknown is most likely to be
    judged against, so each is tried as a stand-in for it."""
    found: dict[tuple[str, str], Any] = {}
    for body in string_literals(source):
        if "\\" not in body:
            found.setdefault(("str", body), body)
    blank = blank_strings(source)
    for number in _NUMBER_RE.findall(blank):
        value: Any = float(number) if "." in number else int(number)
        found.setdefault((type(value).__name__, number), value)
    for keyword in _KEYWORD_RE.findall(blank):
        value = {"true": True, "false": False, "null": None}[keyword]
        found.setdefault(("keyword", keyword), value)
    return tuple(found.values())[:MAX_LITERALS]


@dataclass(frozen=True)
class ReadSet:
    """What one rule (its expression, and its message for conversion) reads.

    ``words``: the field names the expression reads (``.name``, and
    path-shaped string literals such as ``lookup``'s); ``reads_whole_object``:
    whether it reads the new object other than field by field. Together they
    tell, conservatively, whether an unknown path could change the verdict.
    ``paths``: for each trimmed variable, the field paths read, or None when
    the variable is used other than through such paths.
    """

    words: frozenset[str]
    reads_whole_object: bool
    paths: Mapping[str, frozenset[tuple[str, ...]] | None]
    # The constants the expression compares against (see ``literals``).
    literals: tuple[Any, ...] = ()


def read_set(expression: str, message_expression: str = "") -> ReadSet:
    """The read set of a rule. Only the expression decides a verdict, so only
    it counts for unknowns; the message counts for what is converted."""
    return ReadSet(
        words=frozenset(words(expression)),
        reads_whole_object=reads_whole_object(expression),
        literals=literals(expression),
        paths={
            **{
                name: union_paths(
                    access_paths(expression, name), access_paths(message_expression, name)
                )
                for name in TRIMMED_VARIABLES
            },
            **{
                name: union_paths(
                    element_paths(expression, name), element_paths(message_expression, name)
                )
                for name in TRIMMED_LISTS
            },
        },
    )
