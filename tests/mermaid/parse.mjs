// Parses Mermaid files with mermaid.js itself and prints, for each file, what the
// parser understood: the diagram type, direction, vertices (id, text, shape,
// classes), edges, subgraphs and class definitions, as one JSON array on stdout.
// A file that does not parse yields { "file", "error" }. Exit status 0 unless
// the tool itself breaks. Usage: node parse.mjs FILE...
import { readFile } from 'node:fs/promises';
import { JSDOM } from 'jsdom';

// mermaid.js sanitizes labels with DOMPurify, which needs a DOM.
const { window } = new JSDOM('');
globalThis.window = window;
globalThis.document = window.document;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });

// Labels keep entity codes (#quot;) in an internal form until rendered; decode them
// the way a browser would, so the text compares with the step's name.
function decode(text) {
  const html = String(text).replace(/ﬂ°°/g, '&#').replace(/ﬂ°/g, '&').replace(/¶ß/g, ';');
  const area = window.document.createElement('textarea');
  area.innerHTML = html;
  return area.value;
}

const entries = (m) => (m instanceof Map ? [...m.entries()] : Object.entries(m));

const results = [];
for (const file of process.argv.slice(2)) {
  const text = await readFile(file, 'utf8');
  try {
    await mermaid.parse(text);
    const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
    const db = diagram.db;
    results.push({
      file,
      type: diagram.type,
      direction: db.getDirection ? db.getDirection() : null,
      vertices: entries(db.getVertices()).map(([id, v]) => ({
        id,
        text: decode(v.text),
        shape: v.type ?? null,
        classes: v.classes ?? [],
      })),
      edges: db.getEdges().map((e) => ({ start: e.start, end: e.end, stroke: e.stroke })),
      subgraphs: db.getSubGraphs().map((s) => ({ id: s.id, title: decode(s.title), nodes: s.nodes })),
      classes: Object.fromEntries(entries(db.getClasses()).map(([k, c]) => [k, c.styles])),
    });
  } catch (e) {
    results.push({ file, error: String(e && e.message ? e.message : e) });
  }
}
process.stdout.write(JSON.stringify(results));
