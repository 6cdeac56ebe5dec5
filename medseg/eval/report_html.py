"""The report as one self-contained HTML page (figures inlined), for Kubeflow's HTML artifact viewer."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;line-height:1.4}"
         "table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
         "th{background:#f2f2f2}img{max-width:100%}blockquote{color:#555}")


def _inline_images(page: str, root: Path) -> str:
    def embed(match: re.Match[str]) -> str:
        source = (root / html.unescape(match.group(1))).resolve()
        if root.resolve() not in source.parents or not source.is_file():
            return match.group(0)
        data = base64.b64encode(source.read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    return re.sub(r'src="([^"]+\.png)"', embed, page)


def markdown_to_html(markdown: str, root: Path) -> str:
    """HTML for ``markdown`` (tables included), PNGs under ``root`` inlined as data URIs."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)  # raw HTML is escaped
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>medseg results</title>"
            f"<style>{STYLE}</style></head><body>{_inline_images(body, root)}</body></html>\n")
