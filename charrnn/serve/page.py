"""The page at /: a prompt box, temperature and length controls, and the continuation
streaming in from /v1/completions. One file, no build step, no outside assets; the
Content-Security-Policy allows exactly its own inline style and script (by hash) and
requests to the server itself."""
import base64
import hashlib
import html

STYLE = """
body { font: 16px/1.4 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; }
textarea, pre { box-sizing: border-box; width: 100%; font: 15px/1.4 ui-monospace, monospace; }
textarea { height: 6rem; }
pre { white-space: pre-wrap; min-height: 12rem; padding: .75rem; background: #f4f4f4; }
.row { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; margin: .5rem 0; }
#prime { color: #777; }
#status { color: #a00; }
"""

SCRIPT = """
const $ = id => document.getElementById(id);
let running = null;
async function go() {
  if (running) running.abort();
  const ctl = new AbortController(); running = ctl;
  $('prime').textContent = $('prompt').value; $('text').textContent = ''; $('status').textContent = '';
  const headers = {'Content-Type': 'application/json'};
  if ($('key') && $('key').value) headers['Authorization'] = 'Bearer ' + $('key').value;
  const body = {prompt: $('prompt').value, max_tokens: Number($('length').value),
                temperature: Number($('temp').value), stream: true};
  try {
    const r = await fetch('/v1/completions', {method: 'POST', headers, body: JSON.stringify(body),
                                              signal: ctl.signal});
    if (!r.ok) { const e = await r.json(); throw new Error(e.error.message); }
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += value;
      let at;
      while ((at = buf.indexOf('\\n\\n')) >= 0) {
        const line = buf.slice(0, at); buf = buf.slice(at + 2);
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') return;
        const ev = JSON.parse(data);
        if (ev.error) throw new Error(ev.error.message);
        $('text').textContent += ev.choices[0].text;
      }
    }
  } catch (e) {
    if (e.name !== 'AbortError') $('status').textContent = String(e.message || e);
  } finally {
    if (running === ctl) running = null;
  }
}
$('go').addEventListener('click', go);
$('stop').addEventListener('click', () => running && running.abort());
$('prompt').addEventListener('keydown', e => { if (e.key === 'Enter' && e.ctrlKey) go(); });
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name} - charrnn</title><style>{style}</style></head>
<body>
<h1>{name}</h1>
<textarea id="prompt" placeholder="Text for the model to continue (may be empty)"></textarea>
<div class="row">
  <label>temperature <input id="temp" type="number" min="0" max="2" step="0.1" value="0.8"></label>
  <label>length <input id="length" type="number" min="1" max="{max_tokens}" value="{length}"></label>
  {key}
  <button id="go">Generate</button> <button id="stop">Stop</button> <span id="status"></span>
</div>
<pre id="out"><span id="prime"></span><span id="text"></span></pre>
<script>{script}</script>
</body></html>
"""

KEY = '<label>API key <input id="key" type="password" autocomplete="off"></label>'


def _hash(text):
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def render(name, needs_key=False, max_tokens=4096):
    """(html, content_security_policy) of the page for the model `name`."""
    doc = PAGE.format(name=html.escape(name), style=STYLE, script=SCRIPT,
                      key=KEY if needs_key else "", max_tokens=max_tokens,
                      length=min(500, max_tokens))
    csp = (f"default-src 'none'; style-src {_hash(STYLE)}; script-src {_hash(SCRIPT)}; "
           f"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return doc, csp
