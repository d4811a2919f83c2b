"""The rating sheet as one self-contained HTML page (no server, no external assets).

Raters open the file, type their name, pick A or B with a justification per item and
press a download button; the page builds the CSV (or JSON) in the browser. Work is kept
in the browser's localStorage so a closed tab loses nothing. Every value from the data
is HTML-escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

from persona_gen.hashing import hex_id

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.4em} h2{font-size:1.1em;margin-top:2em;border-bottom:1px solid #ccc}
pre.persona{background:#f6f6f6;padding:.8em;white-space:pre-wrap;font-size:.85em;max-height:18em;overflow:auto}
.item{border:1px solid #ddd;border-radius:6px;padding:1em;margin:1em 0}
.answers{display:grid;grid-template-columns:1fr 1fr;gap:1em}
.answer{background:#fafafa;padding:.6em;white-space:pre-wrap;border:1px solid #eee}
.done{border-color:#6a6}
textarea{width:100%;min-height:3em}
#bar{position:sticky;bottom:0;background:#fff;padding:.8em 0;border-top:1px solid #ccc}
"""

_SCRIPT = """
(function(){
  const KEY = "persona-sheet-" + document.body.dataset.sheet;
  const items = Array.from(document.querySelectorAll(".item"));
  const rater = document.getElementById("rater");
  function collect(){
    return items.map(el => {
      const picked = el.querySelector("input[type=radio]:checked");
      return {item_id: el.dataset.item, persona_id: el.dataset.persona,
              choice: picked ? picked.value : "",
              justification: el.querySelector("textarea").value};
    });
  }
  function refresh(){
    const rows = collect();
    let done = 0;
    rows.forEach((r, i) => { items[i].classList.toggle("done", !!r.choice); if (r.choice) done++; });
    document.getElementById("progress").textContent = done + " of " + rows.length + " rated";
    localStorage.setItem(KEY, JSON.stringify({rater: rater.value, ratings: rows}));
  }
  function restore(){
    const saved = JSON.parse(localStorage.getItem(KEY) || "null");
    if (!saved) return;
    rater.value = saved.rater || "";
    const byId = {};
    (saved.ratings || []).forEach(r => byId[r.item_id] = r);
    items.forEach(el => {
      const r = byId[el.dataset.item];
      if (!r) return;
      el.querySelectorAll("input[type=radio]").forEach(b => b.checked = (b.value === r.choice));
      el.querySelector("textarea").value = r.justification || "";
    });
  }
  function quote(v){ return '"' + String(v).replace(/"/g, '""') + '"'; }
  function save(name, text, type){
    const url = URL.createObjectURL(new Blob([text], {type: type}));
    const a = document.createElement("a");
    a.href = url; a.download = name; document.body.appendChild(a); a.click();
    a.remove(); URL.revokeObjectURL(url);
  }
  function fileStem(){ return "ratings-" + (rater.value.trim().replace(/[^A-Za-z0-9_-]+/g, "_") || "anonymous"); }
  document.getElementById("csv").onclick = () => {
    if (!rater.value.trim()) { alert("Please enter your rater name first."); return; }
    const header = ["item_id","persona_id","rater","choice","justification"];
    const lines = [header.join(",")].concat(collect().map(r =>
      [r.item_id, r.persona_id, rater.value.trim(), r.choice, r.justification].map(quote).join(",")));
    save(fileStem() + ".csv", lines.join("\\n") + "\\n", "text/csv");
  };
  document.getElementById("json").onclick = () => {
    if (!rater.value.trim()) { alert("Please enter your rater name first."); return; }
    const doc = {sheet: document.body.dataset.sheet, rater: rater.value.trim(), ratings: collect()};
    save(fileStem() + ".json", JSON.stringify(doc, null, 2), "application/json");
  };
  document.addEventListener("input", refresh);
  document.addEventListener("change", refresh);
  restore(); refresh();
})();
"""

_INSTRUCTIONS = (
    "Read each person's profile, then their question and the two answers. Pick the "
    "answer this person would rather receive, judging as them (their situation, values "
    "and needs), not as yourself, and say briefly why. When done, download your ratings "
    "and send the file back. Your work is saved in this browser as you go."
)


def _item(r: dict[str, Any]) -> str:
    iid = escape(str(r["item_id"]), quote=True)
    return (
        f'<div class="item" data-item="{iid}" data-persona="{escape(str(r["persona_id"]), quote=True)}">'
        f"<p><b>Question:</b> {escape(str(r['question']))}</p>"
        '<div class="answers">'
        f'<div><b>Answer A</b><div class="answer">{escape(str(r["answer_a"]))}</div></div>'
        f'<div><b>Answer B</b><div class="answer">{escape(str(r["answer_b"]))}</div></div>'
        "</div><p>This person would prefer: "
        f'<label><input type="radio" name="c-{iid}" value="A"> A</label> '
        f'<label><input type="radio" name="c-{iid}" value="B"> B</label></p>'
        f'<label>Why?<textarea name="j-{iid}"></textarea></label></div>'
    )


def render_sheet(items: list[dict[str, Any]], title: str) -> str:
    """The page for `items` (dicts with the item columns), grouped by persona."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in items:
        groups.setdefault(str(r["persona_id"]), []).append(r)
    # The storage key ties saved work to this exact set of items.
    sheet = hex_id(*(r["item_id"] for r in items), size=6)
    sections = []
    for n, (pid, rows) in enumerate(groups.items(), start=1):
        sections.append(
            f"<section><h2>Person {n} <small>({escape(pid)})</small></h2>"
            f'<pre class="persona">{escape(str(rows[0]["persona_text"]))}</pre>'
            + "".join(_item(r) for r in rows) + "</section>"
        )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body data-sheet="{sheet}"><h1>{escape(title)}</h1><p>{escape(_INSTRUCTIONS)}</p>'
        '<p><label>Your rater name: <input id="rater" autocomplete="off"></label></p>'
        + "".join(sections)
        + '<div id="bar"><span id="progress"></span> '
        '<button id="csv" type="button">Download ratings (CSV)</button> '
        '<button id="json" type="button">Download ratings (JSON)</button></div>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
