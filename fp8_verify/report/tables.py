"""Markdown tables and the environment header, written once for every report, doc and tool."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def _cell(x: object) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> list[str]:
    """GitHub Markdown table lines (``|`` in cells escaped).

    >>> markdown_table(["a", "b"], [[1, "x|y"]])
    ['| a | b |', '|---|---|', '| 1 | x\\\\|y |']
    """
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def text_table(header: Sequence[object], rows: Iterable[Sequence[object]], gap: int = 2) -> list[str]:
    """A plain fixed-width table for the terminal."""
    rows = [[str(c) for c in r] for r in rows]
    head = [str(h) for h in header]
    widths = [max([len(head[i])] + [len(r[i]) for r in rows]) for i in range(len(head))]
    fmt = (" " * gap).join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head).rstrip(), "-" * (sum(widths) + gap * (len(widths) - 1))]
    out += [fmt.format(*r).rstrip() for r in rows]
    return out


def environment_header(env: dict[str, object]) -> str:
    """One line naming where numbers were measured: ``vLLM 0.23.0 | torch 2.11.0 | NVIDIA H100 ...``."""
    keys = ("vllm", "torch", "device", "kernel", "date")
    parts = [f"{k} {env[k]}" if k in ("vllm", "torch") else str(env[k]) for k in keys if env.get(k)]
    return " | ".join(parts)
