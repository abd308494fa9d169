"""The home page's document: markup and style here, the script in `home_script`.

Self-contained on purpose: no font, script or style from elsewhere (a Pi may have no
internet, and a page that loads nothing else is fast on a phone). Everything it shows it
gets from `/site.json` (its first document comes inside the page, so the first paint has
the data) and `/live`; without a script it says so and links the JSON.
"""

from __future__ import annotations

from bridge.web.home_script import SCRIPT

STYLE = """
:root{--bg:#f6f7f9;--card:#fff;--ink:#1b2430;--mute:#6b7685;--line:#e2e6eb;--sun:#f2a900;
--use:#2f6fd6;--ok:#2e9d5b;--warn:#d98a00;--bad:#d2443a;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#12161c;--card:#1b2129;--ink:#e8edf3;
--mute:#95a1b0;--line:#2c3440}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.4 system-ui,-apple-system,
"Segoe UI",Roboto,sans-serif}
main{max-width:880px;margin:0 auto;padding:12px}
header{display:flex;align-items:center;justify-content:space-between;gap:8px;flex-wrap:wrap}
h1{font-size:20px;margin:4px 0}h2{font-size:15px;margin:0 0 8px;color:var(--mute);
font-weight:600;text-transform:uppercase;letter-spacing:.04em}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:12px;margin:10px 0}
.pill{border-radius:99px;padding:2px 10px;font-size:13px;font-weight:600;color:#fff;
background:var(--mute)}
.pill.ok{background:var(--ok)}.pill.degraded{background:var(--warn)}.pill.down{background:var(--bad)}
.now{display:grid;grid-template-columns:repeat(3,1fr);gap:8px;background:none;border:0;
padding:0}
.now div{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px}
.now b{display:block;font-size:26px;font-variant-numeric:tabular-nums;white-space:nowrap}
.now span{color:var(--mute);font-size:13px}
#pvbox{border-top:4px solid var(--sun)}#loadbox{border-top:4px solid var(--use)}
#netbox{border-top:4px solid var(--mute)}
.today{display:flex;gap:4px 18px;flex-wrap:wrap}.today b{font-variant-numeric:tabular-nums}
svg{width:100%;height:auto;display:block}
.legend{font-size:13px;color:var(--mute)}.legend i{display:inline-block;width:10px;
height:10px;border-radius:2px;margin:0 4px 0 10px}
#panels{display:grid;grid-template-columns:repeat(auto-fill,minmax(96px,1fr));gap:6px}
.tile{position:relative;overflow:hidden;border:1px solid var(--line);border-radius:8px;
padding:6px 8px;min-height:70px}
.tile b{display:block;font-size:18px;font-variant-numeric:tabular-nums}
.tile span,.tile small{display:block;font-size:12px;color:var(--mute);position:relative}
.tile i{position:absolute;left:0;right:0;bottom:0;background:var(--sun);opacity:.22}
.tile.stale{opacity:.55;border-style:dashed}
.tile.fault,.tile.low,.tile.high{border:2px solid var(--bad)}
.tile.fault small,.tile.low small,.tile.high small{color:var(--bad);font-weight:600}
#health.ok{border-left:5px solid var(--ok)}#health.degraded{border-left:5px solid var(--warn)}
#health.down{border-left:5px solid var(--bad)}
#health ul{margin:6px 0 0;padding-left:20px}
.mute{color:var(--mute);font-size:13px;margin:6px 0 0}
footer{text-align:center;font-size:13px;color:var(--mute);margin:14px 0}
footer a{color:inherit;margin:0 6px}
@media (max-width:560px){.now{grid-template-columns:1fr 1fr}.now b{font-size:22px}
#netbox{grid-column:span 2}}
"""

BODY = """<main>
<header><h1>&#9728;&#65039; Solar at home</h1>
<span id="status" class="pill">loading</span></header>
<noscript><section>This page needs JavaScript; the same data is at
<a href="/site.json">/site.json</a>.</section></noscript>
<div class="now">
<div id="pvbox"><span>Production</span><b id="pv">&ndash;</b></div>
<div id="loadbox"><span>Consumption</span><b id="load">&ndash;</b></div>
<div id="netbox"><span id="netlabel">Grid</span><b id="net">&ndash;</b></div>
</div>
<p class="mute" id="updated" style="margin:6px 2px 0">Waiting for data&hellip;</p>
<section><h2>Today so far</h2><div class="today">
<div>Produced <b id="pvday">&ndash;</b></div><div>Used <b id="loadday">&ndash;</b></div>
<div id="netdaybox">Grid <b id="netday">&ndash;</b></div></div>
<p class="mute" id="since"></p></section>
<section><h2>Today</h2><svg id="curve" viewBox="0 0 600 230" role="img"
aria-label="Today's production and consumption"></svg>
<div class="legend"><i style="background:var(--sun)"></i>production
<i style="background:var(--use)"></i>consumption (kW)</div></section>
<section><h2 id="panelhead">Panels</h2><div id="panels"></div>
<p class="mute" id="panelnote"></p></section>
<section id="health"><h2>The PVS</h2><div id="summary">&ndash;</div><ul id="reasons"></ul>
<p class="mute" id="healthmore"></p></section>
<footer><a href="/health">/health</a><a href="/metrics">/metrics</a>
<a href="/cgi-bin/dl_cgi?Command=DeviceList">DeviceList</a><a href="/site.json">/site.json</a>
<div id="version"></div></footer>
</main>"""

HEAD = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
    '<meta name="viewport" content="width=device-width,initial-scale=1">\n'
    "<title>Solar at home &middot; pvs-bridge</title>\n"
    f"<style>{STYLE}</style></head>\n<body>\n{BODY}\n"
    '<script id="site" type="application/json">'
).encode()
TAIL = f"</script>\n<script>{SCRIPT}</script>\n</body></html>\n".encode()


def page(data: bytes = b"") -> bytes:
    """The page, with `/site.json`'s document as it is now (JSON bytes) for its first paint."""
    return HEAD + data.replace(b"<", b"\\u003c") + TAIL
