// The moderators' view: clusters of duplicate threads, fetched with the moderator key in a
// header (never in the URL, so no log or browser history holds it), kept in memory only.
"use strict";

const PER_PAGE = 20;
const form = document.getElementById("login");
const keyBox = document.getElementById("key");
const statusLine = document.getElementById("status");
const view = document.getElementById("view");
const summary = document.getElementById("summary");
const list = document.getElementById("clusters");
const prev = document.getElementById("prev");
const next = document.getElementById("next");
const pageInfo = document.getElementById("pageinfo");
const csvButton = document.getElementById("csv");
let key = "";
let page = 1;

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text); // never innerHTML: user text
  return node;
}

function link(member) {
  // only web addresses become links: a "javascript:" url from the forum's data never runs here
  if (typeof member.url === "string" && /^https?:\/\//i.test(member.url)) {
    const a = el("a", "", member.title);
    a.href = member.url;
    a.rel = "noopener noreferrer";
    a.target = "_blank";
    return a;
  }
  return el("span", "", member.title);
}

function number(value) {
  return value === null || value === undefined ? "" : value.toFixed(3);
}

async function call(path) {
  const response = await fetch(path, { headers: { "X-API-Key": key }, cache: "no-store" });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(response.status + ": " + detail);
  }
  return response;
}

function showCluster(cluster) {
  const li = el("li");
  li.dataset.canonical = cluster.canonical;
  const table = el("table");
  const head = el("tr");
  for (const name of ["Thread", "Created", "Answers", "Score", "Probability"]) head.append(el("th", "", name));
  table.append(head);
  for (const member of cluster.threads) {
    const row = el("tr", member.thread_id === cluster.canonical ? "canonical" : "");
    row.dataset.threadId = member.thread_id;
    const title = el("td");
    title.append(link(member));
    row.append(title, el("td", "", member.created_at || ""), el("td", "num", member.answers),
               el("td", "num", number(member.score)), el("td", "num", number(member.probability)));
    table.append(row);
  }
  li.append(table);
  return li;
}

async function load() {
  statusLine.textContent = "Loading (the first time after a change may take a while)...";
  try {
    const response = await call(`/v1/moderation/duplicates?page=${page}&per_page=${PER_PAGE}`);
    const body = await response.json();
    list.replaceChildren(...body.clusters.map(showCluster));
    list.start = (page - 1) * PER_PAGE + 1;
    const pages = Math.max(1, Math.ceil(body.total / PER_PAGE));
    summary.textContent = `${body.total} groups of duplicates among ${body.threads} threads ` +
      `(by ${body.by}, threshold ${body.threshold}).`;
    pageInfo.textContent = `page ${page} of ${pages}`;
    prev.disabled = page <= 1;
    next.disabled = page >= pages;
    view.hidden = false;
    statusLine.textContent = "";
  } catch (error) {
    view.hidden = true;
    statusLine.textContent = "Could not load the duplicates: " + error.message;
  }
}

async function downloadCsv() {
  try {
    const blob = await (await call("/v1/moderation/duplicates.csv")).blob();
    const a = el("a");
    a.href = URL.createObjectURL(blob);
    a.download = "duplicate-clusters.csv";
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  } catch (error) {
    statusLine.textContent = "Could not download the CSV: " + error.message;
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  key = keyBox.value;
  page = 1;
  load();
});
prev.addEventListener("click", () => { page -= 1; load(); });
next.addEventListener("click", () => { page += 1; load(); });
csvButton.addEventListener("click", downloadCsv);
