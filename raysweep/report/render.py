"""Render a list of blocks to Markdown and to a self-contained HTML page (images linked)."""
from __future__ import annotations

import html
import math
import re

import pandas as pd


def fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and v.is_integer() and abs(v) >= 1:  # counts held in float columns (targets)
        return str(int(v))
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4):
            return f"{v:.2e}"
        return f"{v:.3f}"
    return str(v)


def md_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(fmt(v).replace("|", "\\|") for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


_CODE = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*(.+?)\*\*")
_EM = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")


def inline_html(text: str) -> str:
    """The Markdown the report's text uses, as HTML: `code`, **strong**, *emphasis*; everything else
    escaped (code spans first, so a `*` inside one stays literal)."""
    parts = _CODE.split(str(text))
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
        else:
            esc = html.escape(part)
            out.append(_EM.sub(r"<em>\1</em>", _STRONG.sub(r"<strong>\1</strong>", esc)))
    return "".join(out)


def html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{inline_html(c)}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{inline_html(fmt(v))}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def to_markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *rest in blocks:
        if kind == "h":
            out.append("#" * rest[0] + " " + rest[1])
        elif kind == "p":
            out.append(rest[0])
        elif kind == "table":
            out.append(md_table(rest[0]))
        elif kind == "img":
            out.append(f"![{rest[1]}]({rest[0]})")
        elif kind == "pre":
            out.append("```\n" + rest[0] + "\n```")
    return "\n\n".join(out) + "\n"


def to_html(blocks: list[tuple], title: str) -> str:
    body = []
    for kind, *rest in blocks:
        if kind == "h":
            body.append(f"<h{rest[0]}>{inline_html(rest[1])}</h{rest[0]}>")
        elif kind == "p":
            body.append(f"<p>{inline_html(rest[0])}</p>")
        elif kind == "table":
            body.append(html_table(rest[0]))
        elif kind == "img":
            body.append(f'<figure><img src="{html.escape(rest[0])}" alt="{html.escape(rest[1])}">'
                        f"<figcaption>{inline_html(rest[1])}</figcaption></figure>")
        elif kind == "pre":
            body.append(f"<pre>{html.escape(rest[0])}</pre>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
             "th{background:#f3f3f3}img{max-width:100%}figcaption{font-size:12px;color:#555}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
