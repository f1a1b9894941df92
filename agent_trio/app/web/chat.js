// The web chat page: streams answers from POST /chat/stream and keeps the session.
// Everything the model or a document says goes through renderMarkdown, which escapes
// the text first and adds only its own tags: nothing they send becomes markup.
"use strict";

(() => {
  const KEY_STORE = "agent-trio.api-key";
  const SESSION_STORE = "agent-trio.session";
  const HEALTH_EVERY_MS = 30000;

  // -- Markdown, safely ---------------------------------------------------------------

  const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

  function escapeHtml(text) {
    return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
  }

  // Inline formatting of text that is already escaped. Code spans and links are set
  // aside first (as \0n\0), so emphasis never reaches into code or an address.
  function inline(escaped) {
    const kept = [];
    const keep = (html) => `\u0000${kept.push(html) - 1}\u0000`;
    let s = escaped.replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (_, ticks, code) =>
      keep(`<code>${code.trim()}</code>`),
    );
    s = s.replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s()]+)\)/g, (_, label, url) =>
      keep(`<a href="${url}" target="_blank" rel="noopener noreferrer">${emphasis(label)}</a>`),
    );
    s = emphasis(s);
    while (/\u0000\d+\u0000/.test(s)) {
      s = s.replace(/\u0000(\d+)\u0000/g, (_, n) => kept[Number(n)]); // a link may hold code
    }
    return s;
  }

  function emphasis(s) {
    return s
      .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^\w_])__(?=\S)([\s\S]*?\S)__(?![\w_])/g, "$1<strong>$2</strong>")
      .replace(/(^|[^*\w])\*(?=[^\s*])([^*]*?[^\s*])\*(?![*\w])/g, "$1<em>$2</em>")
      .replace(/(^|[^\w_])_(?=[^\s_])([^_]*?[^\s_])_(?![\w_])/g, "$1<em>$2</em>");
  }

  const FENCE = /^\s{0,3}(`{3,}|~{3,})/;
  const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
  const ITEM = /^\s{0,3}(?:([-*+])|(\d{1,9})[.)])\s+(.*)$/;
  const QUOTE = /^\s{0,3}&gt;\s?/;

  function startsBlock(line) {
    return FENCE.test(line) || HEADING.test(line) || ITEM.test(line) || QUOTE.test(line);
  }

  // Paragraphs, headings, lists, quotes and code blocks; a code block still open (the
  // answer is streaming) runs to the end.
  function blocks(lines) {
    const html = [];
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      const fence = FENCE.exec(line);
      if (fence) {
        const code = [];
        for (i += 1; i < lines.length && !lines[i].trim().startsWith(fence[1]); i += 1) {
          code.push(lines[i]);
        }
        i += 1;
        html.push(`<pre><code>${code.join("\n")}</code></pre>`);
      } else if (!line.trim()) {
        i += 1;
      } else if (HEADING.test(line)) {
        const [, marks, text] = HEADING.exec(line);
        const level = Math.min(marks.length + 2, 6);
        html.push(`<h${level}>${inline(text)}</h${level}>`);
        i += 1;
      } else if (QUOTE.test(line)) {
        const quoted = [];
        for (; i < lines.length && QUOTE.test(lines[i]); i += 1) {
          quoted.push(lines[i].replace(QUOTE, ""));
        }
        html.push(`<blockquote>${blocks(quoted)}</blockquote>`);
      } else if (ITEM.test(line)) {
        i = list(lines, i, html);
      } else {
        const para = [];
        for (; i < lines.length && lines[i].trim() && (!para.length || !startsBlock(lines[i])); i += 1) {
          para.push(lines[i].trimStart());
        }
        html.push(`<p>${linesOf(para.join("\n").trimEnd())}</p>`);
      }
    }
    return html.join("");
  }

  // The lines of a paragraph or an item flow together, as in Markdown; one that ends
  // in two spaces breaks the line.
  function linesOf(text) {
    return inline(text).replace(/ {2,}\n/g, "<br>").replace(/[ \t]*\n/g, " ");
  }

  function list(lines, start, html) {
    const first = ITEM.exec(lines[start]);
    const ordered = first[2] !== undefined;
    const items = [];
    let i = start;
    for (; i < lines.length; i += 1) {
      const item = ITEM.exec(lines[i]);
      if (item && (item[2] !== undefined) === ordered) {
        items.push(item[3]);
      } else if (items.length && /^\s{2,}\S/.test(lines[i])) {
        items[items.length - 1] += `\n${lines[i].trimStart()}`;
      } else {
        break;
      }
    }
    const body = items.map((t) => `<li>${linesOf(t.trimEnd())}</li>`).join("");
    const number = ordered ? Number(first[2]) : 1;
    html.push(ordered ? `<ol${number !== 1 ? ` start="${number}"` : ""}>${body}</ol>` : `<ul>${body}</ul>`);
    return i;
  }

  function renderMarkdown(source) {
    const text = escapeHtml(String(source).replace(/\u0000/g, "").replace(/\r\n?/g, "\n"));
    return blocks(text.split("\n"));
  }

  // -- talking to the service ---------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const state = {
    key: localStorage.getItem(KEY_STORE),
    session: localStorage.getItem(SESSION_STORE),
    running: null,
  };

  class Unauthorized extends Error {}

  async function api(path, options = {}) {
    const headers = {};
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    if (state.key) headers.Authorization = `Bearer ${state.key}`;
    const response = await fetch(path, { ...options, headers });
    if (response.status === 401) {
      askKey(
        state.key
          ? "The API key was refused (401 Unauthorized). Enter it again."
          : "This service needs an API key.",
      );
      throw new Unauthorized("unauthorized");
    }
    return response;
  }

  async function problem(response) {
    try {
      const { error } = await response.json();
      return `${error.message} (${response.status} ${error.code})`;
    } catch {
      return `The service answered ${response.status}.`;
    }
  }

  // Each frame is "event: <type>\ndata: <json>\n\n"; the JSON repeats the type.
  async function readFrames(response, onFrame) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const data = buffer
          .slice(0, end)
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        buffer = buffer.slice(end + 2);
        if (data) onFrame(JSON.parse(data));
      }
    }
  }

  // -- the conversation ---------------------------------------------------------------

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function addQuestion(text) {
    const turn = element("div", "turn user");
    turn.append(element("div", "who", "You"), element("div", "body plain", text));
    $("log").append(turn);
    $("empty").hidden = true;
    turn.scrollIntoView({ block: "end" });
    return turn;
  }

  function addAnswer() {
    const turn = element("div", "turn assistant");
    const answer = {
      turn,
      text: "",
      tools: [],
      sources: new Map(),
      finished: false,
      who: element("div", "who", "Answer"),
      body: element("div", "body"),
      status: element("p", "status"),
      toolList: element("p", "tools"),
      sourceList: element("ol", "sources"),
    };
    answer.status.hidden = answer.toolList.hidden = answer.sourceList.hidden = true;
    turn.dataset.status = "streaming";
    turn.setAttribute("aria-busy", "true"); // read out once it is complete
    turn.append(answer.who, answer.body, answer.status, answer.toolList, answer.sourceList);
    $("log").append(turn);
    $("empty").hidden = true;
    return answer;
  }

  function setText(answer, text) {
    answer.text = text;
    answer.body.innerHTML = renderMarkdown(text);
    answer.turn.scrollIntoView({ block: "end" });
  }

  function setTools(answer, tools) {
    answer.tools = tools;
    const names = tools.map((t) => t.tool_name);
    answer.toolList.textContent = names.length ? `Tools used: ${names.join(", ")}` : "";
    answer.toolList.hidden = !names.length;
  }

  function addSources(answer, sources) {
    for (const s of sources) {
      const seen = answer.sources.get(s.document_id);
      if (!seen || s.score > seen.score) answer.sources.set(s.document_id, s);
    }
    const best = [...answer.sources.values()].sort((a, b) => b.score - a.score);
    answer.sourceList.replaceChildren(...best.map(sourceItem));
    answer.sourceList.hidden = !best.length;
  }

  function sourceItem(source) {
    const item = element("li");
    const link = element("a", "", source.document_title || source.document_source);
    link.href = `/documents/${encodeURIComponent(source.document_id)}`;
    link.addEventListener("click", (event) => {
      if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
      event.preventDefault(); // read it here, with the API key; a new tab gets the JSON
      showDocument(source.document_id);
    });
    const meta = `${source.document_source} · score ${Number(source.score).toFixed(3)}`;
    item.append(link, " ", element("span", "meta", meta));
    return item;
  }

  const STATUS_TEXT = {
    interrupted: "Interrupted: stopped before the answer was complete.",
    failed: "This answer failed.",
  };

  function finish(answer, status, message) {
    answer.finished = true;
    answer.turn.dataset.status = status;
    answer.turn.setAttribute("aria-busy", "false");
    const text = message || STATUS_TEXT[status];
    answer.status.textContent = text || "";
    answer.status.hidden = !text;
    answer.status.className = `status ${status}`;
    if (status === "failed") answer.status.setAttribute("role", "alert");
  }

  function onFrame(answer, frame) {
    switch (frame.type) {
      case "session":
        state.session = frame.session_id;
        localStorage.setItem(SESSION_STORE, frame.session_id);
        break;
      case "model":
        answer.who.textContent = `Answer · ${frame.model_used}`;
        break;
      case "text":
        setText(answer, answer.text + frame.content);
        break;
      case "tool_call":
        setTools(answer, [...answer.tools, frame]);
        break;
      case "tools":
        setTools(answer, frame.tools);
        break;
      case "sources":
        addSources(answer, frame.sources);
        break;
      case "end":
        finish(answer, "complete");
        break;
      case "error":
        // the server stopping ends a stream as interrupted (and stores it so)
        finish(
          answer,
          frame.code === "shutting_down" ? "interrupted" : "failed",
          `Error: ${frame.message} (${frame.code})`,
        );
        break;
      default:
        break; // a type this page does not know yet
    }
  }

  function setBusy(busy) {
    $("send").disabled = busy;
    $("stop").disabled = !busy;
  }

  async function ask(text) {
    const question = addQuestion(text);
    const answer = addAnswer();
    const controller = new AbortController();
    state.running = controller;
    setBusy(true);
    const body = { message: text };
    if (state.session) body.session_id = state.session;
    if (!$("model-choice").hidden) body.model_choice = $("model").value;
    try {
      const response = await api("/chat/stream", {
        method: "POST",
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (!response.ok) {
        finish(answer, "failed", `Error: ${await problem(response)}`);
        return;
      }
      await readFrames(response, (frame) => onFrame(answer, frame));
      if (!answer.finished) finish(answer, "interrupted", "The answer stopped before its end.");
    } catch (err) {
      if (controller.signal.aborted) {
        finish(answer, "interrupted");
      } else if (err instanceof Unauthorized) {
        question.remove();
        answer.turn.remove();
        $("message").value = text;
      } else {
        finish(answer, "failed", `Error: the service could not be reached (${err.message}).`);
      }
    } finally {
      if (state.running === controller) state.running = null;
      setBusy(false);
    }
  }

  function stop() {
    if (state.running) state.running.abort();
  }

  function newChat() {
    stop();
    state.session = null;
    localStorage.removeItem(SESSION_STORE);
    $("log").replaceChildren();
    $("empty").hidden = false;
    $("message").focus();
  }

  async function restore() {
    $("log").replaceChildren();
    $("empty").hidden = false;
    if (!state.session) return;
    const response = await api(`/sessions/${encodeURIComponent(state.session)}`);
    if (response.status === 404) {
      newChat(); // gone (expired, or another service): start fresh
      return;
    }
    if (!response.ok) {
      finish(addAnswer(), "failed", `Error: ${await problem(response)}`);
      return;
    }
    const session = await response.json();
    for (const message of session.messages) {
      if (message.role === "user") {
        addQuestion(message.content);
      } else {
        const answer = addAnswer();
        setText(answer, message.content);
        setTools(answer, message.tool_calls || []);
        finish(answer, message.status);
      }
    }
  }

  async function loadModels() {
    const response = await api("/chat/models");
    if (!response.ok) return;
    const { models, default: chosen } = await response.json();
    const select = $("model");
    select.replaceChildren(...models.map((name) => new Option(name, name, false, name === chosen)));
    $("model-choice").hidden = models.length < 2;
  }

  async function start() {
    try {
      await loadModels();
      await restore();
    } catch (err) {
      if (!(err instanceof Unauthorized)) {
        finish(addAnswer(), "failed", `Error: the service could not be reached (${err.message}).`);
      }
    }
  }

  // -- API key, documents, health -----------------------------------------------------

  function askKey(reason) {
    $("key-reason").textContent = reason;
    $("key-form").hidden = false;
    $("key").value = "";
    $("key").focus();
  }

  function saveKey(event) {
    event.preventDefault();
    state.key = $("key").value.trim();
    localStorage.setItem(KEY_STORE, state.key);
    $("key-form").hidden = true;
    start();
  }

  async function showDocument(id) {
    const dialog = $("document");
    const response = await api(`/documents/${encodeURIComponent(id)}`).catch(() => null);
    if (!response) return;
    if (!response.ok) {
      $("document-title").textContent = "Document not available";
      $("document-source").textContent = await problem(response);
      $("document-content").replaceChildren();
    } else {
      const doc = await response.json();
      $("document-title").textContent = doc.title;
      $("document-source").textContent = doc.source;
      $("document-content").innerHTML = renderMarkdown(doc.content);
    }
    if (!dialog.open) dialog.showModal();
  }

  async function checkHealth() {
    const health = $("health");
    let status = "unreachable";
    let detail = "the service does not answer";
    try {
      const report = await (await fetch("/health")).json();
      status = report.status;
      detail = Object.entries(report.checks)
        .map(([name, check]) => `${name}: ${check.status}`)
        .join(", ");
    } catch {
      // unreachable, as said
    }
    health.dataset.status = status;
    health.title = `service ${status}: ${detail}`;
    $("health-text").textContent = status;
  }

  function main() {
    $("ask").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = $("message").value.trim();
      if (!text || state.running) return;
      $("message").value = "";
      ask(text);
    });
    $("message").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("ask").requestSubmit();
      }
    });
    $("stop").addEventListener("click", stop);
    $("new-chat").addEventListener("click", newChat);
    $("key-form").addEventListener("submit", saveKey);
    $("document-close").addEventListener("click", () => $("document").close());
    checkHealth();
    setInterval(checkHealth, HEALTH_EVERY_MS);
    start();
  }

  window.agentTrio = { renderMarkdown };
  main();
})();
