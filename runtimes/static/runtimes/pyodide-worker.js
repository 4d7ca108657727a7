// The browser runtime's Python: one Pyodide interpreter in a module Web Worker
// (docs/browser-runtime.md). browser-runtime.js (the page) drives it with messages:
//
//   page → worker  {op: "init", indexURL, kernelURL, interruptBuffer: Int32Array|null}
//                  {op: "run", id, cell, code}       run one cell
//                  {op: "reset", id}                 forget every variable (restart: true)
//   worker → page  {op: "ready", pythonVersion, pyodideVersion, interruptible}
//                  {op: "failed", message}            Pyodide did not load
//                  {op: "event", json}                one event: '{"type", "data"}'
//                  {op: "done", id, outcome}          outcome: JSON text (pyodide_kernel.py)
//
// Cells run here, off the page's thread, so the page keeps its WebSocket alive while Python
// computes. The server's Content-Security-Policy on this script (runtime_project/staticfiles.py)
// limits what users' code can reach to this server's static files.

let pyodide = null;
let kernel = null;
let currentCell = null;
let queue = Promise.resolve();

const post = (message) => self.postMessage(message);
const errorText = (err) => String(err && err.message ? err.message : err);

function fdWriter(name) {
  // Output written below Python's sys.stdout (C extensions, os.write): it still belongs to the
  // running cell.
  const decoder = new TextDecoder();
  return {
    write(bytes) {
      const text = decoder.decode(bytes, { stream: true });
      if (text) {
        post({
          op: "event",
          json: JSON.stringify({
            type: `process.${name}`,
            data: { process_id: "kernel", cell: currentCell, text },
          }),
        });
      }
      return bytes.length;
    },
  };
}

async function init({ indexURL, kernelURL, interruptBuffer }) {
  const { loadPyodide } = await import(`${indexURL}pyodide.mjs`);
  pyodide = await loadPyodide({
    indexURL,
    // Packages resolve against our copy too: nothing is fetched from a CDN.
    packageBaseUrl: indexURL,
    lockFileURL: `${indexURL}pyodide-lock.json`,
    stdin: () => null, // input() gets end-of-file: there is nobody to type
  });
  pyodide.setStdout(fdWriter("stdout"));
  pyodide.setStderr(fdWriter("stderr"));
  if (interruptBuffer) pyodide.setInterruptBuffer(interruptBuffer);
  const response = await fetch(kernelURL);
  if (!response.ok) throw new Error(`Failed to load the kernel: HTTP ${response.status}`);
  pyodide.FS.mkdirTree("/lib/browser_runtime");
  pyodide.FS.writeFile("/lib/browser_runtime/pyodide_kernel.py", await response.text());
  pyodide.runPython("import sys; sys.path.append('/lib/browser_runtime')");
  const module = pyodide.pyimport("pyodide_kernel");
  kernel = module.Kernel((json) => post({ op: "event", json }));
  module.destroy();
  kernel.install_builtins();
  post({
    op: "ready",
    pythonVersion: pyodide.runPython("import sys; sys.version.split()[0]"),
    pyodideVersion: pyodide.version,
    interruptible: Boolean(interruptBuffer),
  });
}

async function runCell({ id, cell, code }) {
  currentCell = cell;
  try {
    const outcome = await kernel.run_cell(cell, code);
    post({ op: "done", id, outcome });
  } catch (err) {
    // The kernel itself was interrupted or failed outside the cell's code.
    post({ op: "done", id, outcome: null, error: errorText(err) });
  } finally {
    currentCell = null;
  }
}

self.onmessage = (event) => {
  const message = event.data;
  if (message.op === "init") {
    init(message).catch((err) => post({ op: "failed", message: errorText(err) }));
  } else if (message.op === "run") {
    queue = queue.then(() => runCell(message));
  } else if (message.op === "reset") {
    queue = queue.then(() => {
      try {
        kernel.reset();
        post({ op: "done", id: message.id, outcome: null });
      } catch (err) {
        post({ op: "done", id: message.id, outcome: null, error: errorText(err) });
      }
    });
  }
};
