"""Safe YAML loading: every error names the file.

Documents are parsed with PyYAML's safe loader and checked *before* they are constructed: at
most ``MAX_DEPTH`` levels of nesting and ``MAX_NODES`` nodes, counting every use of an alias
as the whole subtree it stands for. A "billion laughs" document (a few lines of nested
aliases) is therefore refused in microseconds instead of being expanded later by anything that
walks or prints it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from jointopt.errors import UserError, clip, short_repr

__all__ = ["load_yaml", "parse_yaml", "MAX_DEPTH", "MAX_NODES", "MAX_BYTES"]

MAX_DEPTH = 32
MAX_NODES = 10_000
MAX_BYTES = 1 << 20  # a study, a search space or a config is a few hundred bytes


class _TooBig(Exception):
    pass


def _measure(node: yaml.Node, depth: int, sizes: dict[int, int], open_: set[int]) -> int:
    """Nodes under ``node`` with aliases expanded (memoised per shared node, so a bomb is
    measured in time linear in its text); raises _TooBig past the limits."""
    if depth > MAX_DEPTH:
        raise _TooBig(f"nested deeper than {MAX_DEPTH} levels")
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise _TooBig("an alias refers to itself (a recursive structure)")
    size = 1
    if isinstance(node, yaml.SequenceNode | yaml.MappingNode):
        open_.add(key)
        if isinstance(node, yaml.MappingNode):
            _no_duplicates(node)
        children: Iterable[yaml.Node] = (node.value if isinstance(node, yaml.SequenceNode)
                                         else (n for pair in node.value for n in pair))
        for child in children:
            size += _measure(child, depth + 1, sizes, open_)
            if size > MAX_NODES:
                raise _TooBig(f"more than {MAX_NODES} values (aliases counted as expanded)")
        open_.discard(key)
    sizes[key] = size
    return size


def _no_duplicates(node: yaml.MappingNode) -> None:
    """PyYAML keeps the last of two equal keys; a repeated key is almost always a mistake."""
    seen: set[tuple[str, str]] = set()
    for k, _ in node.value:
        if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
            if (k.tag, k.value) in seen:
                raise _TooBig(f"key {short_repr(k.value)} appears twice in one mapping "
                              f"(line {k.start_mark.line + 1})")
            seen.add((k.tag, k.value))


def parse_yaml(text: str, source: str | Path) -> Any:
    """Parse one YAML (or JSON) document with the safe loader, within the size limits."""
    if len(text) > MAX_BYTES:
        raise UserError(f"{source}: {len(text)} characters; a YAML input is at most "
                        f"{MAX_BYTES} characters")
    loader = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, 1, {}, set())
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        why = str(getattr(e, "problem", None) or e)
        raise UserError(f"{source}: invalid YAML{where}: {clip(why)}") from None
    except _TooBig as e:
        raise UserError(f"{source}: YAML refused: {e}") from None
    except RecursionError:  # the composer recurses once per nesting level
        raise UserError(f"{source}: YAML refused: nested deeper than {MAX_DEPTH} "
                        "levels") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise UserError(f"{source}: invalid YAML: {clip(str(e))}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise UserError(f"{path}: {path.stat().st_size} bytes; a YAML input is at most "
                            f"{MAX_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    data = parse_yaml(text, path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data
