"use strict";
// The review sheet: pages of posts built with createElement / textContent only (user text is never parsed as
// HTML), decisions kept per post, saved as a CSV that `hashtagger train` reads.
(function () {
  const data = JSON.parse(document.getElementById("sheet-data").textContent);
  const posts = data.posts;
  const storeKey = "hashtagger-review:" + data.key;
  // Per post: decision[tag] = "accepted" | "rejected" (absent: not decided), added = hashtags the person typed.
  const state = posts.map(() => ({ decision: {}, added: [] }));
  const $ = (id) => document.getElementById(id);
  const list = $("posts");
  let view = []; // indices of the posts that pass the filters
  let page = 0;
  let cur = 0; // position in `view` of the current post
  let sug = 0; // its current suggestion

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function normTags(text) {
    return text.split(/[\s,;#]+/).map((t) => t.toLowerCase()).filter(Boolean);
  }

  function acceptedTags(i) {
    const s = state[i];
    const out = posts[i].tags.filter((t) => s.decision[t[0]] === "accepted").map((t) => t[0]);
    for (const a of s.added) if (!out.includes(a)) out.push(a);
    return out;
  }

  const isReviewed = (i) => state[i].added.length > 0 || Object.keys(state[i].decision).length > 0;

  function passes(i) {
    const p = posts[i];
    const status = $("f-status").value;
    if (status === "tagged" && p.skipped) return false;
    if (status === "skipped" && !p.skipped) return false;
    if (status === "reviewed" && !isReviewed(i)) return false;
    if (status === "pending" && isReviewed(i)) return false;
    const query = normTags($("f-tag").value)[0] || "";
    const min = parseFloat($("f-score").value) || 0;
    if (!query && min <= 0) return true;
    if (query && state[i].added.some((t) => t.includes(query))) return true;
    return p.tags.some((t) => (!query || t[0].includes(query)) && t[1] >= min);
  }

  function persist() {
    const kept = {};
    state.forEach((s, i) => {
      if (isReviewed(i)) kept[i] = s;
    });
    try {
      localStorage.setItem(storeKey, JSON.stringify(kept));
    } catch (e) {
      /* storage off or full: the sheet still works, the choices last until the tab closes */
    }
  }

  function restore() {
    let kept = null;
    try {
      kept = JSON.parse(localStorage.getItem(storeKey) || "null");
    } catch (e) {
      kept = null;
    }
    if (!kept) return 0;
    let n = 0;
    for (const [i, s] of Object.entries(kept)) {
      if (state[i] && s && typeof s.decision === "object" && Array.isArray(s.added)) {
        state[i] = { decision: s.decision, added: s.added.map(String) };
        n++;
      }
    }
    return n;
  }

  function tagRow(i, t, k) {
    const [name, score, seen] = t;
    const decision = state[i].decision[name] || "";
    const row = el("li", "tag " + decision);
    row.dataset.tag = name;
    const acc = el("button", "acc", "\u2713");
    acc.type = "button";
    acc.title = "accept (a)";
    acc.addEventListener("click", () => decide(i, k, "accepted"));
    const rej = el("button", "rej", "\u2717");
    rej.type = "button";
    rej.title = "reject (r)";
    rej.addEventListener("click", () => decide(i, k, "rejected"));
    const bar = el("span", "bar");
    const fill = el("span");
    fill.style.width = Math.max(0, Math.min(1, score)) * 100 + "%";
    bar.appendChild(fill);
    row.append(acc, rej, el("span", "name", "#" + name), bar, el("span", "score", score.toFixed(3)));
    if (seen === false) row.appendChild(el("span", "seen new", "not in training"));
    else if (seen === true) row.appendChild(el("span", "seen known", "seen in training"));
    else row.appendChild(el("span"));
    return row;
  }

  function addedRow(i) {
    const box = el("div", "added");
    for (const a of state[i].added) {
      const chip = el("span", "chip", "#" + a);
      const x = el("button", "", "\u00d7");
      x.type = "button";
      x.title = "remove";
      x.addEventListener("click", () => {
        state[i].added = state[i].added.filter((b) => b !== a);
        changed(i);
      });
      chip.appendChild(x);
      box.appendChild(chip);
    }
    const input = el("input", "add");
    input.type = "text";
    input.placeholder = "add hashtag";
    input.setAttribute("aria-label", "add a hashtag to this post");
    const go = el("button", "add-go", "add");
    go.type = "button";
    const add = () => addTags(i, input.value);
    go.addEventListener("click", add);
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") add();
    });
    box.append(input, go);
    return box;
  }

  function card(i, pos) {
    const p = posts[i];
    const art = el("article", "post" + (p.skipped ? " skipped" : ""));
    art.dataset.index = String(i);
    art.addEventListener("click", () => {
      if (cur !== pos) setCurrent(pos, false);
    });
    const thumb = el("div", "thumb");
    if (p.thumb >= 0) {
      const img = el("img");
      img.alt = p.id;
      img.src = data.thumbs[p.thumb];
      thumb.appendChild(img);
    } else {
      thumb.appendChild(el("div", "placeholder", "no image: " + (p.thumb_error || "none named")));
    }
    const body = el("div", "body");
    const meta = el("div", "meta");
    meta.append(el("span", "pid", p.id), el("span", "status", p.status));
    body.append(meta, el("p", "caption", p.caption));
    const tags = el("ol", "tags");
    p.tags.forEach((t, k) => tags.appendChild(tagRow(i, t, k)));
    body.append(tags, addedRow(i));
    art.append(thumb, body);
    return art;
  }

  function counts() {
    let reviewed = 0;
    let accepted = 0;
    let skipped = 0;
    posts.forEach((p, i) => {
      if (isReviewed(i)) reviewed++;
      accepted += acceptedTags(i).length;
      if (p.skipped) skipped++;
    });
    $("counts").textContent =
      `${view.length} of ${posts.length} posts shown \u00b7 ${skipped} skipped \u00b7 ${reviewed} reviewed \u00b7 ` +
      `${accepted} hashtags accepted`;
  }

  function render() {
    const pages = Math.max(1, Math.ceil(view.length / data.page_size));
    page = Math.min(Math.max(0, page), pages - 1);
    const start = page * data.page_size;
    const cards = view.slice(start, start + data.page_size).map((i, k) => card(i, start + k));
    if (cards.length) list.replaceChildren(...cards);
    else list.replaceChildren(el("p", "empty", "No post matches the filters."));
    $("page").textContent = `page ${page + 1} of ${pages}`;
    mark();
    counts();
    performance.mark("hashtagger-rendered");
  }

  function cardOf(pos) {
    return list.querySelector(`article[data-index="${view[pos]}"]`);
  }

  function mark() {
    // The current post and suggestion are classes, not a rebuild: a rebuilt card would lose the focus of its input.
    for (const c of list.querySelectorAll(".post.current, .tag.focus")) c.classList.remove("current", "focus");
    const c = cardOf(cur);
    if (!c) return;
    c.classList.add("current");
    const row = c.querySelectorAll(".tag")[sug];
    if (row) row.classList.add("focus");
  }

  function redraw(pos) {
    const old = cardOf(pos);
    if (old) old.replaceWith(card(view[pos], pos));
    mark();
  }

  function changed(i) {
    const pos = view.indexOf(i);
    if (pos >= 0) redraw(pos);
    counts();
    persist();
  }

  function setCurrent(pos, scroll = true) {
    if (!view.length) return;
    pos = Math.min(Math.max(0, pos), view.length - 1);
    cur = pos;
    sug = 0;
    const target = Math.floor(pos / data.page_size);
    if (target !== page) {
      page = target;
      render();
    } else {
      mark();
    }
    const c = cardOf(pos);
    if (c && scroll) c.scrollIntoView({ block: "nearest" });
  }

  function decide(i, k, what) {
    const name = posts[i].tags[k][0];
    const d = state[i].decision;
    if (d[name] === what) delete d[name];
    else d[name] = what;
    changed(i);
  }

  function addTags(i, text) {
    const known = posts[i].tags.map((t) => t[0]);
    for (const t of normTags(text)) {
      if (known.includes(t)) state[i].decision[t] = "accepted";
      else if (!state[i].added.includes(t)) state[i].added.push(t);
    }
    changed(i);
    const input = cardOf(view.indexOf(i));
    if (input) input.querySelector("input.add").focus();
  }

  function applyFilters() {
    view = posts.map((_, i) => i).filter(passes);
    page = 0;
    cur = 0;
    sug = 0;
    render();
  }

  function csvCell(value) {
    return '"' + String(value).replace(/"/g, '""') + '"';
  }

  function toCsv() {
    const rows = [["post_id", "image", "caption", "hashtags"]];
    posts.forEach((p, i) => {
      const tags = acceptedTags(i);
      if (tags.length) rows.push([p.id, p.image, p.caption, tags.map((t) => "#" + t).join(" ")]);
    });
    return { text: rows.map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n", posts: rows.length - 1 };
  }

  function save() {
    const csv = toCsv();
    const url = URL.createObjectURL(new Blob([csv.text], { type: "text/csv;charset=utf-8" }));
    const a = el("a");
    a.href = url;
    a.download = data.csv_name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    $("message").textContent = `saved ${data.csv_name}: ${csv.posts} posts with accepted hashtags`;
  }

  function onCurrent(f) {
    if (!view.length) return;
    f(view[cur]);
  }

  function moveSuggestion(step) {
    onCurrent((i) => {
      const n = posts[i].tags.length;
      if (n) sug = (sug + step + n) % n;
      mark();
    });
  }

  function decideCurrent(what) {
    onCurrent((i) => {
      if (!posts[i].tags.length) return;
      state[i].decision[posts[i].tags[sug][0]] = what;
      if (sug < posts[i].tags.length - 1) sug++;
      changed(i);
    });
  }

  function acceptRest() {
    onCurrent((i) => {
      for (const t of posts[i].tags) if (!state[i].decision[t[0]]) state[i].decision[t[0]] = "accepted";
      changed(i);
    });
  }

  function focusAdd() {
    const c = cardOf(cur);
    if (c) c.querySelector("input.add").focus();
  }

  const keys = {
    j: () => setCurrent(cur + 1),
    ArrowDown: () => setCurrent(cur + 1),
    k: () => setCurrent(cur - 1),
    ArrowUp: () => setCurrent(cur - 1),
    l: () => moveSuggestion(1),
    ArrowRight: () => moveSuggestion(1),
    h: () => moveSuggestion(-1),
    ArrowLeft: () => moveSuggestion(-1),
    a: () => decideCurrent("accepted"),
    r: () => decideCurrent("rejected"),
    A: acceptRest,
    t: focusAdd,
    n: () => setCurrent((page + 1) * data.page_size),
    p: () => setCurrent((page - 1) * data.page_size),
  };

  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "s") {
      e.preventDefault();
      save();
      return;
    }
    if (e.target.matches("input, select, textarea")) {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    const f = !e.ctrlKey && !e.metaKey && !e.altKey && keys[e.key];
    if (f) {
      e.preventDefault();
      f();
    }
  });

  $("save").addEventListener("click", save);
  $("prev").addEventListener("click", () => setCurrent((page - 1) * data.page_size));
  $("next").addEventListener("click", () => setCurrent((page + 1) * data.page_size));
  $("f-tag").addEventListener("input", applyFilters);
  $("f-status").addEventListener("change", applyFilters);
  $("f-score").addEventListener("input", () => {
    $("f-score-out").textContent = parseFloat($("f-score").value).toFixed(2);
    applyFilters();
  });
  $("source").textContent = data.source;
  const restored = restore();
  if (restored) $("message").textContent = `restored your choices on ${restored} posts`;
  applyFilters();
  window.hashtaggerReview = { csv: () => toCsv().text, state: state };
})();
