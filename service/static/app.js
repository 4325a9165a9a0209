// The forum integration in miniature: debounced typeahead search and a duplicate warning.
"use strict";

const DEBOUNCE_MS = 250;
const MIN_CHARS = 3;
const titleBox = document.getElementById("title");
const bodyBox = document.getElementById("body");
const results = document.getElementById("results");
const heading = document.getElementById("results-heading");
const statusLine = document.getElementById("status");
const warning = document.getElementById("duplicate");
let timer = null;
let latest = 0; // only the newest request may update the page

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text; // never innerHTML: titles are user text
  return node;
}

function link(item) {
  const a = el("a", "", item.title);
  // a thread's url comes from the forum's data: only web addresses become links, so a
  // "javascript:" url can never run in the page
  const web = typeof item.url === "string" && /^https?:\/\//i.test(item.url);
  a.href = web ? item.url : "#" + encodeURIComponent(item.thread_id);
  return a;
}

function showHits(hits) {
  results.replaceChildren();
  heading.hidden = hits.length === 0;
  for (const hit of hits) {
    const li = el("li");
    li.dataset.threadId = hit.thread_id;
    li.append(link(hit));
    // the hit came from one of the thread's answers, not its question (nothing says it was solved)
    if (hit.matched === "answer") li.append(el("span", "badge", "matched an answer"));
    li.append(el("p", "snippet", hit.snippet));
    results.append(li);
  }
}

function showDuplicate(all) {
  // once the index is calibrated, only the "duplicate" tier warns; "related" threads are listed anyway
  const dups = all.filter((d) => d.tier === null || d.tier === undefined || d.tier === "duplicate");
  if (dups.length === 0) {
    warning.hidden = true;
    warning.replaceChildren();
    return;
  }
  const top = dups[0];
  warning.replaceChildren(el("strong", "", "This may already have been asked: "), link(top));
  if (typeof top.probability === "number") {
    warning.append(el("span", "", " (" + Math.round(top.probability * 100) + "% likely the same question)"));
  }
  warning.dataset.threadId = top.thread_id;
  warning.hidden = false;
}

async function update() {
  const title = titleBox.value.trim();
  const body = bodyBox.value.trim();
  const id = ++latest;
  if (title.length < MIN_CHARS) {
    showHits([]);
    showDuplicate([]);
    statusLine.textContent = "";
    return;
  }
  // the end untrimmed: a space after the last word says it is finished (the search's typing)
  const q = body ? title + "\n" + bodyBox.value.trimStart() : titleBox.value.trimStart();
  try {
    const [search, dups] = await Promise.all([
      // POST keeps what the person types out of URLs, and so out of any proxy's access log
      fetch("/v1/search", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ q: q.slice(0, 2000), k: 5, typing: true }),
      }),
      fetch("/v1/duplicates", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ title: title.slice(0, 2000), body: body.slice(0, 20000), k: 1 }),
      }),
    ]);
    if (id !== latest) return;
    if (!search.ok || !dups.ok) throw new Error("HTTP " + search.status + "/" + dups.status);
    const hits = (await search.json()).hits;
    showHits(hits);
    showDuplicate((await dups.json()).duplicates);
    statusLine.textContent = hits.length ? "" : "No similar threads yet: yours may be the first.";
  } catch (err) {
    if (id === latest) statusLine.textContent = "Search is unavailable right now (" + err.message + ").";
  }
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(update, DEBOUNCE_MS);
}

titleBox.addEventListener("input", schedule);
bodyBox.addEventListener("input", schedule);
