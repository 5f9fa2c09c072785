"""Where a value sits in a YAML file (for messages that name file:line), for project.yaml and the
user's own config alike."""

from __future__ import annotations

import yaml


def _line(text: str, line: int) -> str:
    lines = text.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else ""


def _line_of(node, loc: tuple) -> int | None:
    """Line (1-based) of the YAML node at a pydantic error location; nearest parent if missing."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == str(part):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            if nxt is None:
                return line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def read_yaml(path, what: str) -> tuple[str, object, object]:
    """(text, node tree, data) of a YAML file; InputError at the line where it is not valid YAML.
    `what` names the file in that message (`project.yaml`, `your dramaforge config`)."""
    from stages.core.errors import InputError

    text = path.read_text(encoding="utf-8-sig")
    try:
        return text, yaml.compose(text), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"{what} is not valid YAML: {getattr(exc, 'problem', exc)}", file=str(path),
                         line=mark.line + 1 if mark else None,
                         text=_line(text, mark.line + 1) if mark else None,
                         hint="check indentation and quoting on that line") from None
