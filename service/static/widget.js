// qa_search's ask-page widget: similar questions under the title as it is typed, and a duplicate
// warning when the title is left or the form submitted. One script tag, no dependencies:
//
//   <script src="https://search.example.org/widget.js" data-title="#title" data-body="#content"
//           data-token-url="/qa-search-token" defer></script>
//
// Server text is only ever set with textContent, no handler is inline and no style either (the
// look comes from widget.css, a file), so the widget runs under a strict Content-Security-Policy.
"use strict";

(() => {
  const script = document.currentScript;
  if (!script) return; // loaded as a module or injected late: there is no tag to read

  const DEBOUNCE_MS = 250;
  const MAX_TITLE_CHARS = 2000;
  const MAX_BODY_CHARS = 20000;
  const opts = script.dataset;
  // searches go to the origin the script came from, unless the forum names another
  const api = (opts.api || new URL(script.src, document.baseURI).origin).replace(/\/+$/, "");
  const minChars = Math.max(1, parseInt(opts.minChars || "3", 10) || 3);
  const k = Math.min(20, Math.max(1, parseInt(opts.k || "5", 10) || 5));
  const uid = "qa-search-" + Math.random().toString(36).slice(2, 8);

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text; // as text, never as markup: titles are the forum's users' words
    return node;
  }

  function plural(n, one, many) {
    return n + " " + (n === 1 ? one : many);
  }

  function start() {
    const title = document.querySelector(opts.title || "#title");
    if (!title) return;
    const body = opts.body ? document.querySelector(opts.body) : null;
    const form = title.form;

    if (opts.css !== "none") {
      const css = document.createElement("link");
      css.rel = "stylesheet";
      css.href = api + "/widget.css";
      document.head.append(css);
    }

    let box = opts.results ? document.querySelector(opts.results) : null;
    if (!box) {
      box = el("div");
      title.insertAdjacentElement("afterend", box);
    }
    box.classList.add("qa-search");
    const status = el("p", "qa-search-status");
    status.id = uid + "-status";
    status.setAttribute("role", "status"); // polite: announces the count without interrupting
    const list = el("ul", "qa-search-results");
    list.id = uid + "-results";
    list.setAttribute("aria-label", "Similar questions");
    list.hidden = true;
    const warning = el("div", "qa-search-duplicate");
    warning.id = uid + "-duplicate";
    warning.setAttribute("aria-live", "polite");
    warning.hidden = true;
    box.append(status, list, warning);
    title.setAttribute("aria-controls", list.id);
    title.setAttribute("aria-describedby",
      [title.getAttribute("aria-describedby"), status.id, warning.id].filter(Boolean).join(" "));
    title.setAttribute("aria-keyshortcuts", "ArrowDown");
    title.setAttribute("autocomplete", "off");

    // -- the forum's search token -----------------------------------------------------------
    let token = null;
    let tokenFetch = null;

    function getToken(fresh) {
      if (!opts.tokenUrl) return Promise.resolve(null);
      if (fresh) token = tokenFetch = null;
      if (token) return Promise.resolve(token);
      if (!tokenFetch) {
        // the forum's own endpoint: same origin, with its session cookie
        tokenFetch = fetch(opts.tokenUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
          .then((r) => (r.ok ? r.json() : null))
          .then((j) => (token = j && typeof j.token === "string" ? j.token : null))
          .catch(() => null)
          .finally(() => (tokenFetch = null));
      }
      return tokenFetch;
    }

    async function post(path, payload) {
      for (let attempt = 0; attempt < 2; attempt++) {
        const headers = { "Content-Type": "application/json" };
        const t = await getToken(attempt > 0);
        if (t) headers["X-QA-Token"] = t;
        // POST keeps what the person types out of URLs, and so out of any proxy's access log
        const resp = await fetch(api + path, {
          method: "POST", headers, body: JSON.stringify(payload), credentials: "omit", mode: "cors",
        });
        if (resp.status === 401 && attempt === 0 && opts.tokenUrl) continue; // stale token: fetch a new one
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.json();
      }
      throw new Error("HTTP 401");
    }

    // -- rendering ------------------------------------------------------------------------
    // the title with the query's words in <mark>, built as nodes: the offsets count code points
    // (as Array.from splits a string), not JavaScript's UTF-16 units
    function marked(node, text, spans) {
      if (!Array.isArray(spans) || spans.length === 0) {
        node.textContent = text;
        return node;
      }
      const chars = Array.from(text);
      let at = 0;
      for (const span of spans) {
        const [start, end] = span;
        const valid = Number.isInteger(start) && Number.isInteger(end) && at <= start && start < end;
        if (!valid || end > chars.length) continue; // out of order or out of range: left as plain text
        const word = el("mark", "qa-search-mark", chars.slice(start, end).join(""));
        node.append(chars.slice(at, start).join(""), word);
        at = end;
      }
      node.append(chars.slice(at).join(""));
      return node;
    }

    function link(item) {
      const a = marked(el("a", "qa-search-link"), item.title, item.highlights && item.highlights.title);
      // only web addresses become links, so a "javascript:" url from the data never runs
      if (typeof item.url === "string" && /^https?:\/\//i.test(item.url)) {
        a.href = item.url;
        a.target = "_blank"; // a new tab: the question being written stays as it is
        a.rel = "noopener";
      } else {
        a.setAttribute("aria-disabled", "true");
        a.tabIndex = 0;
      }
      return a;
    }

    function showHits(hits) {
      list.replaceChildren();
      for (const hit of hits) {
        const li = el("li", "qa-search-hit");
        li.dataset.threadId = hit.thread_id;
        li.append(link(hit));
        const meta = el("span", "qa-search-meta",
          hit.matched === "answer" ? "matched an answer" : "matched the question");
        li.append(" ", meta);
        if (hit.answered === true) li.append(" ", el("span", "qa-search-badge", "answered"));
        if (hit.snippet) {
          li.append(marked(el("p", "qa-search-snippet"), hit.snippet, hit.highlights && hit.highlights.snippet));
        }
        list.append(li);
      }
      list.hidden = hits.length === 0;
    }

    function announce(n) {
      status.textContent = n === 0 ? "No similar questions" : plural(n, "similar question", "similar questions");
    }

    function close() {
      list.hidden = true;
    }

    function showDuplicate(all) {
      // once the index is calibrated, only the "duplicate" tier warns
      const dups = (all || []).filter((d) => d.tier === null || d.tier === undefined || d.tier === "duplicate");
      if (dups.length === 0) {
        warning.hidden = true;
        warning.replaceChildren();
        return false;
      }
      const top = dups[0];
      warning.replaceChildren(el("strong", "", "This looks like a duplicate of "), link(top));
      if (typeof top.probability === "number") {
        warning.append(" (" + Math.round(top.probability * 100) + "% likely the same question)");
      }
      warning.dataset.threadId = top.thread_id;
      warning.hidden = false;
      return true;
    }

    // -- typeahead --------------------------------------------------------------------------
    let timer = null;
    let latest = 0; // only the newest request may change what is shown

    async function search() {
      const text = title.value.trim();
      const id = ++latest;
      if (text.length < minChars) {
        showHits([]);
        status.textContent = "";
        return;
      }
      try {
        // the end untrimmed: a space after the last word says it is finished (the search's typing)
        const typed = title.value.trimStart().slice(0, MAX_TITLE_CHARS);
        const res = await post("/v1/search", { q: typed, k, highlight: true, typing: true });
        if (id !== latest) return;
        showHits(res.hits || []);
        announce((res.hits || []).length);
      } catch (err) {
        if (id === latest) {
          showHits([]);
          status.textContent = "Similar questions are unavailable right now.";
        }
      }
    }

    title.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(search, DEBOUNCE_MS);
    });

    // -- duplicate check --------------------------------------------------------------------
    let checked = null; // the draft last checked, and whether it looked like a duplicate
    let checking = null;

    function draft() {
      return {
        title: title.value.trim().slice(0, MAX_TITLE_CHARS),
        body: body ? String(body.value || "").slice(0, MAX_BODY_CHARS) : "",
      };
    }

    function checkDuplicate() {
      const d = draft();
      const key = d.title + "\u0000" + d.body;
      if (d.title.length < minChars) {
        showDuplicate([]);
        return Promise.resolve(false);
      }
      if (checked && checked.key === key) return Promise.resolve(checked.duplicate);
      if (checking && checking.key === key) return checking.done;
      const done = post("/v1/duplicates", { ...d, k: 1 })
        .then((res) => {
          if (draft().title !== d.title) return false; // typed on meanwhile: a newer check follows
          const duplicate = showDuplicate(res.duplicates);
          checked = { key, duplicate };
          return duplicate;
        })
        .catch(() => false) // the service being down never stops a question from being posted
        .finally(() => {
          if (checking && checking.key === key) checking = null;
        });
      checking = { key, done };
      return done;
    }

    title.addEventListener("change", checkDuplicate);
    if (body) body.addEventListener("change", checkDuplicate); // the body tells near-duplicates apart

    if (form) {
      let warned = null; // the draft whose warning was shown at a submit: a second submit posts it
      form.addEventListener("submit", (event) => {
        const d = draft();
        const key = d.title + "\u0000" + d.body;
        if (warned === key || d.title.length < minChars) return;
        event.preventDefault();
        const submitter = event.submitter || null;
        checkDuplicate().then((duplicate) => {
          warned = key;
          if (duplicate) {
            warning.append(" Submit again to post your question anyway.");
            title.focus();
          } else if (form.requestSubmit) {
            form.requestSubmit(submitter);
          } else {
            form.submit();
          }
        });
      });
    }

    // -- keyboard ---------------------------------------------------------------------------
    function links() {
      return list.hidden ? [] : Array.from(list.querySelectorAll("a.qa-search-link"));
    }

    title.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown" && links().length) {
        event.preventDefault();
        links()[0].focus();
      } else if (event.key === "Escape" && !list.hidden) {
        event.preventDefault();
        close();
      }
    });

    list.addEventListener("keydown", (event) => {
      const all = links();
      const at = all.indexOf(document.activeElement);
      if (at < 0) return;
      if (event.key === "ArrowDown") {
        event.preventDefault();
        all[Math.min(at + 1, all.length - 1)].focus();
      } else if (event.key === "ArrowUp") {
        event.preventDefault();
        (at === 0 ? title : all[at - 1]).focus();
      } else if (event.key === "Escape") {
        event.preventDefault();
        close();
        title.focus();
      } else if (event.key === "Enter" && !all[at].href) {
        event.preventDefault(); // a thread with no address: nothing to open
      }
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
