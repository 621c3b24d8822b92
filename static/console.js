// Console helpers: keyboard shortcuts, the shortcut list, error display for htmx requests,
// and the "touched fields" list that inline validation uses. No framework; htmx does the rest.
(() => {
  "use strict";

  const csrfToken = () => JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"];
  const dialog = () => document.getElementById("shortcuts");

  // ------------------------------------------------------------------ errors from htmx requests
  // htmx does not swap 4xx/5xx answers by default; show them in the page's alert area instead of
  // silently doing nothing, so that every action gives visible feedback.
  document.addEventListener("htmx:beforeSwap", (event) => {
    const status = event.detail.xhr.status;
    if (status < 400) return;
    const flash = document.getElementById("flash");
    if (!flash) return;
    event.detail.shouldSwap = true;
    event.detail.isError = false;
    event.detail.target = flash;
    event.detail.swapOverride = "innerHTML";
  });
  document.addEventListener("htmx:sendError", () => {
    const flash = document.getElementById("flash");
    if (flash) flash.innerHTML = '<div class="error">The server could not be reached. Check your connection and try again.</div>';
  });
  // A successful request clears an old error.
  document.addEventListener("htmx:afterRequest", (event) => {
    const flash = document.getElementById("flash");
    if (flash && event.detail.successful && event.detail.target !== flash) flash.innerHTML = "";
  });

  // ------------------------------------------------------------------ inline validation: touched fields
  const entry = () => document.getElementById("order-entry");
  const touched = new Set();
  const rememberTouched = (event) => {
    const form = entry();
    const field = event.target;
    if (!form || !field.name || field.form !== form || field.name.startsWith("_")) return;
    touched.add(field.name);
    form.elements["_touched"].value = Array.from(touched).join(",");
  };
  document.addEventListener("input", rememberTouched, true);
  document.addEventListener("focusout", (event) => {
    // Leaving a field counts as touching it, so "is required" appears once the agent moves on.
    if (event.target.value === "" && event.target.form === entry()) {
      rememberTouched(event);
      htmx.trigger(entry(), "change");
    }
  }, true);

  // An error slot that inline validation filled or emptied marks its field invalid or valid again,
  // so that a screen reader hears the same state the red text shows.
  const markInvalidFields = (form) => {
    form.querySelectorAll(".field-error[id]").forEach((slot) => {
      const field = form.querySelector(`[aria-describedby~="${slot.id}"]`);
      if (!field) return;
      if (slot.textContent.trim()) field.setAttribute("aria-invalid", "true");
      else field.removeAttribute("aria-invalid");
    });
  };
  document.addEventListener("htmx:afterSettle", () => {
    const form = entry();
    if (form) markInvalidFields(form);
  });

  // ------------------------------------------------------------------ focus after a panel is replaced
  // Verify, Override and the hold controls replace the whole order panel (Resume and Reassign the
  // item box): the button that had focus is gone and focus falls back to the page body. Put it on
  // the result message, else the panel's heading, so a keyboard user keeps their place, and say the
  // result in the polite live region (a status inserted with its text is not reliably announced).
  //
  // Which panel gets the focus is decided when a swap begins, from where the request came: an
  // order action also makes the item box refresh itself, and which of the two settles first
  // varies with load. The box refreshing itself (the request's origin is the box) takes nothing.
  const REPLACED_PANELS = ["order-panel", "item-status"];
  let refocus = null;
  document.addEventListener("htmx:beforeSwap", (event) => {
    const panel = event.detail.target;
    if (!panel || !REPLACED_PANELS.includes(panel.id)) return;
    const origin = event.detail.requestConfig && event.detail.requestConfig.elt;
    if ((origin && origin !== panel && panel.contains(origin)) || panel.contains(document.activeElement)) {
      refocus = panel.id;
    }
  });
  document.addEventListener("htmx:afterSettle", (event) => {
    const panel = event.target;
    if (!panel || panel.id !== refocus || !panel.isConnected) return;
    refocus = null;
    const active = document.activeElement;
    if (active && active !== document.body && !panel.contains(active)) return;  // the agent moved on
    const landing = panel.querySelector(".notice") || panel.querySelector("h2, h3");
    if (!landing) return;
    if (!landing.hasAttribute("tabindex")) landing.setAttribute("tabindex", "-1");
    landing.focus();
    const announce = document.getElementById("announce");
    if (announce && landing.classList.contains("notice")) announce.textContent = landing.textContent.trim();
  });

  // ------------------------------------------------------------------ shortcuts
  const typing = (element) =>
    element && (element.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(element.tagName));

  const getNext = () => {
    const button = document.getElementById("get-next");
    if (button) { button.click(); return; }
    fetch("/console/queue/next", {
      method: "POST",
      headers: { "X-CSRF-Token": csrfToken(), "HX-Request": "true" },
      credentials: "same-origin",
    }).then((response) => {
      const target = response.headers.get("HX-Redirect");
      if (target) window.location.assign(target);
      else response.text().then((html) => { document.getElementById("flash").innerHTML = html; });
    });
  };

  const focusShortcut = (key) => {
    const element = document.querySelector(`[data-shortcut="${key}"]`);
    if (!element) return false;
    element.focus();
    element.scrollIntoView({ block: "center", behavior: "smooth" });
    return true;
  };

  // The field the agent was last in: Esc leaves a field (focus goes to the body), and "next field"
  // then continues from there instead of starting over at the top of the form.
  let lastField = null;
  document.addEventListener("focusin", (event) => {
    if (event.target.form && typing(event.target)) lastField = event.target;
  });

  // The next field that has an error, else the next empty required one, after the current field,
  // wrapping round to the top of the form.
  const nextField = () => {
    const form = entry() || document.querySelector("main form:not([role=search])");
    if (!form) return;
    const fields = Array.from(form.querySelectorAll("input:not([type=hidden]), select, textarea"));
    const needs = (f) => {
      const error = f.getAttribute("aria-describedby") && document.getElementById(f.getAttribute("aria-describedby"));
      return (error && error.textContent.trim()) || (f.required && !f.value);
    };
    const current = fields.includes(document.activeElement) ? document.activeElement : lastField;
    const start = fields.indexOf(current) + 1;
    const ordered = fields.slice(start).concat(fields.slice(0, start));
    (ordered.find(needs) || ordered[0])?.focus();
  };
  // Alt+N reaches the next field from inside a field, where plain letters are typing. Chromium
  // keeps Alt+F, Alt+E and Alt+D for itself, not Alt+N; `code` keeps it working on layouts where
  // Alt+N types a character (e.g. macOS).
  const isNextFieldChord = (event) =>
    event.altKey && !event.ctrlKey && !event.metaKey && event.code === "KeyN";

  const actions = {
    g: getNext,
    d: () => focusShortcut("d"),
    s: () => focusShortcut("s"),
    h: () => focusShortcut("h"),
    v: () => focusShortcut("v"),
    n: nextField,
    q: () => window.location.assign("/console/queue"),
    "/": () => document.getElementById("search-q")?.focus() || document.getElementById("top-q")?.focus(),
    "?": () => { const d = dialog(); if (d) (d.open ? d.close() : d.showModal()); },
  };

  document.addEventListener("keydown", (event) => {
    if (isNextFieldChord(event)) { event.preventDefault(); nextField(); return; }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape" && typing(document.activeElement)) { document.activeElement.blur(); return; }
    // A shortcut's select (outcome, snooze time) submits its form on Enter.
    if (event.key === "Enter" && event.target.matches("select[data-shortcut]")) {
      event.preventDefault();
      event.target.form.requestSubmit();
      return;
    }
    if (typing(event.target)) return;
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  });

  document.addEventListener("click", (event) => {
    if (event.target.closest("[data-shortcuts-open]")) dialog()?.showModal();
  });
})();
