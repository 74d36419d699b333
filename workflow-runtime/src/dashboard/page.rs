//! The two pages: HTML shells whose script renders the JSON API and keeps it
//! current from the event stream.

use super::svg::escape;
use crate::model::ExecutionId;

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; }
table { border-collapse: collapse; min-width: 40rem; }
th, td { text-align: left; padding: .3rem .7rem; border-bottom: 1px solid #ddd; font-size: .9rem; }
th { background: #f4f4f4; }
.status { font-weight: 600; }
.completed { color: #1b7f2a; } .failed, .timed_out, .rolled_back { color: #b3261e; }
.running { color: #8a6d00; } .awaiting, .paused { color: #1f5fa8; } .cancelled { color: #666; }
.bar { height: .8rem; background: #7fb3e6; border-radius: 2px; }
.lane { position: relative; height: .8rem; width: 24rem; background: #f2f2f2; }
.lane .bar { position: absolute; top: 0; }
.bar.error, .bar.interrupted { background: #e08080; }
.bar.snoozed { background: #c8c8c8; }
.bar.rollback { background: #e0a050; }
.bar.awaiting, .bar.paused { background: #b39ddb; }
#flash { min-height: 1.2rem; color: #1f5fa8; }
pre { background: #f7f7f7; padding: .6rem; max-width: 60rem; overflow: auto; }
button { margin-right: .4rem; }
"#;

/// What the pages share: fetching, the event stream, actions.
const COMMON_JS: &str = r#"
const esc = (t) => String(t ?? '').replace(/[&<>"']/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const ms = (v) => v == null ? '–' : (v < 1000 ? v.toFixed(1) + ' ms' : (v / 1000).toFixed(2) + ' s');
// Live updates reload at most once a second, however busy the engine is.
let pending = null;
let loaded = 0;
function later() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; loaded = Date.now(); load(); }, Math.max(150, 1000 - (Date.now() - loaded)));
}
function flash(text) { document.getElementById('flash').textContent = text; }
// A read that needs the login again (the cookie expired): show the login page.
async function get(path) {
  const res = await fetch(BASE + path);
  if (res.status === 401) { location.reload(); return null; }
  return res;
}
// Actions are JSON POSTs; the browser sends the dashboard's cookie with them.
async function act(path, body) {
  const res = await fetch(BASE + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body ?? {}),
  });
  const answer = await res.json().catch(() => ({}));
  if (res.status === 401) { location.reload(); return; }
  if (res.status === 404 && answer.error === undefined) { flash('actions are not enabled on this dashboard'); return; }
  flash(res.ok ? (answer.note ?? 'done') : (answer.error ?? ('failed: ' + res.status)));
  load();
  return res.ok ? answer : null;
}
const events = new EventSource(BASE + '/events');
events.onmessage = (m) => { if (concerns(JSON.parse(m.data))) later(); };
setInterval(load, 5000);
load();
"#;

pub(super) fn shell(title: &str, base: &str, body: &str, script: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{STYLE}</style></head>
<body>
{body}
<p id="flash" role="status"></p>
<script>
const BASE = {base};
{script}
{COMMON_JS}
</script>
</body></html>"#,
        title = escape(title),
        base = serde_json::to_string(base).unwrap_or_else(|_| "\"\"".into()),
    )
}

/// The overview: workflows with statistics, live executions, dead letters.
pub(super) fn overview(base: &str) -> String {
    let body = r#"<h1>Workflows</h1>
<table id="workflows"><thead><tr><th>Workflow</th><th>Steps</th><th>Trigger</th><th>Running</th>
<th>Ended</th><th>Success</th><th>Average</th><th>p95</th><th>Errors</th></tr></thead><tbody></tbody></table>
<h2>Running executions <small id="running-total"></small></h2>
<table id="running"><thead><tr><th>Execution</th><th>Workflow</th><th>Status</th><th>Progress</th>
<th>Running steps</th><th>Started</th></tr></thead><tbody></tbody></table>
<h2>Dead letters <small id="letters-total"></small></h2>
<table id="letters"><thead><tr><th>Execution</th><th>Workflow</th><th>Failed step</th><th>Error</th>
<th>Failed at</th><th></th></tr></thead><tbody></tbody></table>"#;
    let script = r#"
const concerns = (_event) => true;
async function load() {
  const res = await get('/api/overview');
  if (res === null) return;
  if (!res.ok) { flash('cannot load the overview: ' + res.status); return; }
  const data = await res.json();
  document.querySelector('#workflows tbody').innerHTML = data.workflows.map((w) => {
    const s = w.stats;
    const errors = Object.entries(s.errors).map(([k, n]) => esc(k) + ' × ' + n).join(', ');
    return `<tr data-workflow="${esc(w.name)}"><td><a href="${BASE}/${encodeURIComponent(w.name)}">${esc(w.name)}</a></td><td>${w.steps}</td><td>${esc(w.trigger)}</td>
      <td class="running-count">${w.running}</td><td class="ended">${s.ended}</td>
      <td class="success">${s.success_rate == null ? '–' : s.success_rate.toFixed(1) + ' %'}</td>
      <td>${ms(s.avg_ms)}</td><td>${ms(s.p95_ms)}</td><td class="errors">${errors}</td></tr>`;
  }).join('');
  const shown = (n, total) => n < total ? `(newest ${n} of ${total})` : '';
  document.getElementById('running-total').textContent = shown(data.running.length, data.running_total);
  document.getElementById('letters-total').textContent = shown(data.dead_letters.length, data.dead_letters_total);
  document.querySelector('#running tbody').innerHTML = data.running.map((r) =>
    `<tr data-execution="${r.id}"><td><a href="${BASE}/executions/${r.id}">${r.id}</a></td><td>${esc(r.workflow)}</td>
     <td class="status ${esc(r.status)}">${esc(r.status)}</td><td>${r.done} / ${r.total}</td>
     <td>${r.running.map(esc).join(', ')}</td><td>${esc(r.started_at)}</td></tr>`).join('');
  document.querySelector('#letters tbody').innerHTML = data.dead_letters.map((d) =>
    `<tr data-letter="${d.id}"><td><a href="${BASE}/executions/${d.id}">${d.id}</a></td><td>${esc(d.workflow)}</td>
     <td>${esc(d.error_step)}</td><td>${esc(d.error)}</td><td>${esc(d.failed_at)}</td>
     <td><button class="retry" data-id="${d.id}">Retry</button></td></tr>`).join('');
  for (const b of document.querySelectorAll('button.retry')) {
    b.onclick = () => act('/api/dead-letters/' + b.dataset.id + '/retry');
  }
}
"#;
    shell("sagaflow — workflows", base, body, script)
}

/// One execution: status, DAG, timeline, context, actions.
pub(super) fn execution(base: &str, id: ExecutionId) -> String {
    let body = format!(
        r#"<p><a href="{home}">← all workflows</a></p>
<h1>Execution <code>{id}</code></h1>
<p>Workflow <strong id="workflow"></strong> — <span id="status" class="status"></span>
 — <span id="progress"></span> — <span id="duration"></span></p>
<p id="note"></p>
<p><button id="cancel">Cancel</button>
<input id="cancel-reason" size="24" placeholder="reason" aria-label="cancel reason">
<label><input type="checkbox" id="cancel-cleanup"> run on_cancel</label>
<label><input type="checkbox" id="cancel-rollback"> roll back completed steps</label>
<button id="pause">Pause</button>
<button id="resume">Resume</button>
<input id="resume-context" size="40" value="{{}}" aria-label="resume context (JSON)"></p>
<p id="restart-part" hidden><button id="restart">Restart from</button>
<select id="restart-step" aria-label="step to restart from"></select>
<input id="restart-context" size="40" value="{{}}" aria-label="restart context (JSON)">
<span class="hint">the steps before it keep their outputs; it and the steps after it run again</span></p>
<div id="dag"></div>
<h2>Steps</h2>
<table id="timeline"><thead><tr><th>Step</th><th>Status</th><th>Attempts</th><th>Every attempt (retries, snoozes, rollbacks)</th>
<th>Duration</th><th>Error</th></tr></thead><tbody></tbody></table>
<div id="journal-part" hidden><h2>Journal</h2>
<table id="journal"><thead><tr><th>#</th><th>At</th><th>Event</th><th>Step</th><th>Attempt</th><th>Outcome</th>
<th>Detail</th></tr></thead><tbody></tbody></table></div>
<h2>Failure</h2><pre id="failure">–</pre>
<h2>Waiting for</h2><pre id="waiting">–</pre>
<h2>Signals not consumed</h2><pre id="signals">–</pre>
<h2>Context</h2><pre id="context"></pre>"#,
        home = escape(if base.is_empty() { "/" } else { base }),
    );
    let script = format!(
        r#"
const ID = "{id}";
const concerns = (event) => event.execution_id === ID;
document.getElementById('cancel').onclick = () => act('/api/executions/' + ID + '/cancel', {{
  reason: document.getElementById('cancel-reason').value || 'cancelled from the dashboard',
  cleanup: document.getElementById('cancel-cleanup').checked,
  rollback: document.getElementById('cancel-rollback').checked,
}});
document.getElementById('pause').onclick = () => act('/api/executions/' + ID + '/pause', {{}});
document.getElementById('resume').onclick = () => {{
  let context;
  try {{ context = JSON.parse(document.getElementById('resume-context').value || '{{}}'); }}
  catch (e) {{ flash('the resume context is not JSON: ' + e.message); return; }}
  act('/api/executions/' + ID + '/resume', context);
}};
document.getElementById('restart').onclick = () => {{
  let context;
  try {{ context = JSON.parse(document.getElementById('restart-context').value || '{{}}'); }}
  catch (e) {{ flash('the restart context is not JSON: ' + e.message); return; }}
  act('/api/executions/' + ID + '/restart', {{ step: document.getElementById('restart-step').value, context }})
    .then((a) => {{ if (a && (a.restarted || a.done === 'restart')) location.href = BASE + '/executions/' + a.execution; }});
}};
async function load() {{
  const res = await get('/api/executions/' + ID);
  if (res === null) return;
  if (!res.ok) {{ flash('cannot load the execution: ' + res.status); return; }}
  const {{ state, dag, stored, holder, timeline }} = await res.json();
  document.getElementById('note').textContent = stored
    ? 'Held by ' + (holder ? 'node ' + holder : 'another process') + ': shown from its store row and journal, as the journal stands (running steps show as pending; the context shown is the input).'
    : '';
  document.getElementById('journal-part').hidden = !stored;
  document.querySelector('#journal tbody').innerHTML = (timeline ?? []).map((e) =>
    `<tr><td>${{e.seq}}</td><td>${{esc(e.at)}}</td><td>${{esc(e.event)}}</td><td>${{esc(e.step)}}</td>
     <td>${{e.attempt ?? ''}}</td><td>${{esc(e.outcome)}}</td><td>${{esc(e.detail)}}</td></tr>`).join('');
  document.getElementById('workflow').textContent = state.workflow;
  const restart = document.getElementById('restart-part'), choice = document.getElementById('restart-step');
  restart.hidden = !state.ended_at;
  const declared = state.steps.filter((s) => !s.graft).map((s) => s.name);
  if (choice.options.length !== declared.length) {{
    choice.innerHTML = declared.map((n) => `<option value="${{esc(n)}}">${{esc(n)}}</option>`).join('');
  }}
  const status = document.getElementById('status');
  status.textContent = state.status;
  status.className = 'status ' + state.status;
  document.getElementById('progress').textContent = state.progress.done + ' / ' + state.progress.total + ' steps';
  document.getElementById('duration').textContent = ms(state.duration);
  document.getElementById('dag').innerHTML = dag ?? '';
  const t0 = Date.parse(state.started_at);
  const t1 = state.ended_at ? Date.parse(state.ended_at) : Date.now();
  const span = Math.max(t1 - t0, 1);
  document.querySelector('#timeline tbody').innerHTML = state.steps.map((s) => {{
    const a = s.started_at ? Date.parse(s.started_at) : null;
    const b = s.ended_at ? Date.parse(s.ended_at) : (a == null ? null : Date.now());
    // One bar per attempt on the execution's time axis: earlier attempts (failed,
    // snoozed, cut short), the latest, then the compensation's attempts.
    const piece = (from, to, cls, title) => {{
      const x = Date.parse(from), y = to ? Date.parse(to) : Date.now();
      return `<div class="bar ${{cls}}" title="${{esc(title)}}" style="left:${{(x - t0) / span * 100}}%;width:${{Math.max((y - x) / span * 100, 0.5)}}%"></div>`;
    }};
    const pieces = (s.history ?? []).filter((h) => h.started_at)
      .map((h) => piece(h.started_at, h.ended_at, h.outcome, 'attempt ' + h.attempt + ': ' + h.outcome + (h.error ? ' (' + h.error.kind + ')' : '')));
    if (a != null) pieces.push(piece(s.started_at, s.ended_at, s.status, 'attempt ' + s.attempts + ': ' + s.status));
    for (const c of (s.compensations ?? []).filter((c) => c.started_at)) {{
      pieces.push(piece(c.started_at, c.ended_at, 'rollback', 'rollback attempt ' + c.attempt + ': ' + c.outcome));
    }}
    const bar = pieces.length ? `<div class="lane">${{pieces.join('')}}</div>` : '';
    return `<tr data-step="${{esc(s.name)}}"><td>${{esc(s.name)}}</td><td class="status ${{esc(s.status)}}">${{esc(s.status)}}</td>
      <td>${{s.attempts}}</td><td>${{bar}}</td><td>${{a == null ? '–' : ms(b - a)}}</td>
      <td>${{esc(s.error ? s.error.kind + ': ' + s.error.message : '')}}</td></tr>`;
  }}).join('');
  document.getElementById('failure').textContent = state.failure ? JSON.stringify(state.failure, null, 2) : '–';
  document.getElementById('waiting').textContent = (state.awaiting ?? []).map((a) =>
    a.step + ': ' + (a.signal ? 'signal ' + a.signal : 'resume') + (a.timeout_at ? ' (until ' + a.timeout_at + ')' : '')).join('\n') || '–';
  document.getElementById('signals').textContent = (state.signals ?? []).map((s) =>
    s.name + (s.step ? ' (held by ' + s.step + ')' : ' (buffered)') + ': ' + JSON.stringify(s.payload)).join('\n') || '–';
  document.getElementById('context').textContent = JSON.stringify(state.context, null, 2);
}}
"#
    );
    shell(&format!("sagaflow — execution {id}"), base, &body, &script)
}

/// The page a browser gets instead of a page it may not see yet: it asks for the
/// token and hands it to `login`, which sets the dashboard's cookie.
pub(super) fn login(base: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sagaflow — log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{STYLE}</style></head>
<body>
<h1>sagaflow dashboard</h1>
<p>This dashboard needs its bearer token.</p>
<form id="login-form"><input id="token" type="password" size="40" autocomplete="current-password"
 aria-label="bearer token" autofocus> <button id="login" type="submit">Log in</button></form>
<p id="flash" role="status"></p>
<script>
const BASE = {base};
document.getElementById('login-form').onsubmit = async (e) => {{
  e.preventDefault();
  const res = await fetch(BASE + '/login', {{
    method: 'POST',
    headers: {{ 'content-type': 'application/json' }},
    body: JSON.stringify({{ token: document.getElementById('token').value }}),
  }});
  if (res.ok) location.reload();
  else document.getElementById('flash').textContent = res.status === 401 ? 'wrong token' : 'failed: ' + res.status;
}};
</script>
</body></html>"#,
        base = serde_json::to_string(base).unwrap_or_else(|_| "\"\"".into()),
    )
}
