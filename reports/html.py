"""Write the report's single index.html: figures (relative links), tables, the runs left out, and
links to every CSV / Markdown / LaTeX / PDF file of the report folder."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from reports.files import write_file

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1150px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
h3{font-size:1.05em;margin-bottom:.3em}
table{border-collapse:collapse;font-size:.82em;margin:.4em 0}
th,td{border-bottom:1px solid #e3e3e3;padding:.25em .6em;text-align:center}
td:first-child,th:first-child{text-align:left} thead th{border-bottom:2px solid #888}
tr.avg td{background:#f5f5f5} small{color:#666} .note{font-size:.8em;color:#555;margin-top:.1em}
img{max-width:100%;height:auto;display:block;margin:.5em 0} .meta{color:#555;font-size:.9em}
pre{background:#f7f7f7;padding:.6em;font-size:.78em;white-space:pre-wrap}
.warn{background:#fff4e5;border-left:4px solid #e69f00;padding:.4em .8em}
"""


def _frame_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0, na_rep="")


def figure(path_png: Path, out_dir: Path, caption: str) -> str:
    rel = path_png.relative_to(out_dir).as_posix()
    pdf = path_png.with_suffix(".pdf").relative_to(out_dir).as_posix()
    return (f'<figure><img src="{html.escape(rel)}" alt="{html.escape(caption)}">'
            f'<figcaption class="note">{html.escape(caption)} (<a href="{html.escape(pdf)}">PDF</a>)'
            f"</figcaption></figure>")


def write_index(out_dir: Path, *, title: str, meta: str, sections: list, not_included: pd.DataFrame,
                left_out: pd.DataFrame, notes: str) -> Path:
    """`sections`: list of (heading, html body). Returns the path of index.html."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><p class='meta'>{meta}</p>"]
    if len(not_included):
        parts.append(f"<p class='warn'>{len(not_included)} run(s) not included: see "
                     f"<a href='#not-included'>Runs not included</a>.</p>")
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
    parts.append("<h2 id='not-included'>Runs not included</h2>")
    if len(not_included):
        parts.append(_frame_html(not_included))
    else:
        parts.append("<p>None: every run in the store is done and complete.</p>")
    parts.append("<h3>Completed runs left out of the cross-task aggregates</h3>")
    parts.append(_frame_html(left_out) if len(left_out) else
                 "<p>None: the aggregates use every completed run.</p>")
    parts.append(f"<h2>Definitions</h2><pre>{html.escape(notes)}</pre>")
    files = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*")
                   if p.is_file() and p.suffix in {".csv", ".md", ".tex", ".pdf"})
    parts.append("<h2>Files</h2><ul>" + "".join(f"<li><a href='{html.escape(f)}'>{html.escape(f)}</a></li>"
                                                 for f in files) + "</ul></body></html>")
    index = out_dir / "index.html"
    write_file(index, "\n".join(parts))
    return index
