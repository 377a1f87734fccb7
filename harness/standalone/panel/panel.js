// tpe-sim control panel: plays the cardholder on the virtual terminal through its control
// API (docs/control-api.md). Vanilla JS, no build step, no external resource.
"use strict";

const LOG_LIMIT = 500;
const PIN_MAX = 12;
const DIRECTIONS = { in: "téléphone → terminal", out: "terminal → téléphone" };
const ENTRY_MODES = { contactless: "sans contact", chip: "puce" };

const NOTICE_MS = 8000; // an error banner goes away after this, or when the terminal moves
const OFF_TITLE = "Terminal éteint : rallumez-le";
const CHIP_REASONS = {
  amount: "Le terminal demande d'insérer la carte : montant au-dessus du plafond sans contact.",
  sca: "Le terminal demande d'insérer la carte : la banque exige le code.",
};

const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);
let pin = "";
let current = null; // the last state snapshot
let batteryTouched = false;
let noticeTimer = null;
let noticeSeen = null; // what the terminal showed when the banner went up
const cardButtons = []; // [card, tap, insert]: enabled or not with the terminal's state

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

function screenKey(state) {
  return state ? JSON.stringify([state.powered, state.state, state.screen]) : null;
}

// `reason`: the API's English words for developers, shown smaller after the French text
function notify(text, reason = "") {
  const notice = byTestId("notice");
  notice.replaceChildren(text);
  if (text && reason) {
    const small = el("small", { className: "reason", textContent: reason });
    small.dataset.testid = "notice-reason";
    notice.append(" ", small);
  }
  notice.hidden = !text;
  clearTimeout(noticeTimer);
  noticeSeen = text ? screenKey(current) : null;
  if (text) noticeTimer = setTimeout(() => notify(""), NOTICE_MS);
}

function money(cents, currency) {
  const euros = (cents / 100).toFixed(2).replace(".", ",");
  return `${euros} ${currency === "EUR" ? "€" : currency}`;
}

async function call(path, body, { withReason = false } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body ?? {}),
    });
  } catch (error) {
    notify("Terminal injoignable : vérifiez qu'il tourne toujours.");
    return null;
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    notify(data.message || `Erreur ${response.status}.`, withReason ? data.reason || "" : "");
    return null;
  }
  notify("");
  if (data.state) render(data.state);
  return data;
}

// ------------------------------------------------------------------ rendering
function render(state) {
  current = state;
  // a banner about an earlier state goes once the terminal has moved on
  if (noticeSeen !== null && screenKey(state) !== noticeSeen) notify("");
  byTestId("terminal-name").textContent = state.name;
  byTestId("terminal-details").textContent =
    `${state.manufacturer} ${state.model} — n° ${state.serial} — logiciel ${state.firmware}` +
    (state.configured ? "" : " — non configuré");
  const badge = byTestId("terminal-state");
  badge.textContent = state.awaiting_code_confirmation ? "Code d'appairage à confirmer" : state.state_label;
  badge.className = state.powered ? `badge ${state.state}` : "badge off";
  byTestId("power-on").hidden = state.powered;

  const screen = byTestId("screen");
  screen.replaceChildren(...state.screen.map((line) => el("div", { textContent: line })));

  byTestId("transaction").textContent = describeTransaction(state.transaction);
  const asking = state.state === "pin_entry";
  byTestId("pinpad").classList.toggle("asking", asking);
  if (!asking && pin) setPin("");
  const txn = state.transaction;
  const off = !state.powered; // no card, no PIN, no key: « Rallumer » is the way back
  document.querySelectorAll(".pinpad button").forEach((button) => gate(button, off));
  gate(byTestId("remove-card"), off, !(txn && txn.card_in_reader));

  byTestId("battery-level").textContent = `${state.battery} %`;
  if (!batteryTouched) byTestId("battery-input").value = state.battery;

  const links = byTestId("links");
  if (state.links.length === 0) {
    links.replaceChildren(el("li", { className: "empty", textContent: "Aucun téléphone connecté." }));
  } else {
    links.replaceChildren(
      ...state.links.map((link) =>
        el("li", {
          textContent: `${link.address}${link.encrypted ? " — chiffrée" : " — non chiffrée"}`,
        }),
      ),
    );
  }
  byTestId("link-drop").disabled = state.links.length === 0;
  updateCardButtons();
}

// Disabled while the terminal is off (saying so), else when `disabled`, with `title` or the
// button's own tooltip.
function gate(button, off, disabled = false, title = "") {
  if (button.dataset.title === undefined) button.dataset.title = button.title;
  button.disabled = off || disabled;
  button.title = off ? OFF_TITLE : title || button.dataset.title;
}

function updateCardButtons() {
  const off = current !== null && !current.powered;
  const txn = current && current.transaction;
  const why = txn && txn.chip_required;
  for (const [card, tap, insert] of cardButtons) {
    const chipOnly = why === "sca" || (why === "amount" && !card.wallet);
    const tapTitle = !card.contactless
      ? "Cette carte n'a pas le sans contact."
      : chipOnly
        ? CHIP_REASONS[why]
        : "";
    gate(tap, off, !card.contactless || chipOnly, tapTitle);
    gate(insert, off, card.wallet, card.wallet ? "Un téléphone ne s'insère pas." : "");
  }
}

function describeTransaction(txn) {
  if (!txn) return "Aucune transaction en cours.";
  const parts = [];
  if (txn.kind === "capture") parts.push(`Prise d'empreinte — fiche ${txn.reference}`);
  else parts.push(`Paiement de ${money(txn.amount, txn.currency)} — facture ${txn.reference}`);
  if (txn.masked_pan) {
    const mode = ENTRY_MODES[txn.entry_mode] || txn.entry_mode || "";
    parts.push(`carte ${txn.masked_pan} (${txn.brand}, ${mode})`);
  }
  if (txn.message) parts.push(txn.message);
  return parts.join(" · ");
}

function setPin(value) {
  pin = value;
  byTestId("pin-display").textContent = "•".repeat(pin.length);
}

function renderCards(cards) {
  const wallet = byTestId("wallet");
  if (cards.length === 0) {
    wallet.replaceChildren(el("li", { className: "empty", textContent: "Catalogue vide." }));
    return;
  }
  cardButtons.length = 0;
  wallet.replaceChildren(...cards.map(cardItem));
  updateCardButtons();
}

function cardItem(card) {
  const brands = card.brands.join(" + ");
  const facts = [card.masked_pan, brands];
  if (card.holder) facts.push(card.holder);
  if (card.wallet) facts.push("téléphone");
  if (!card.contactless) facts.push("sans contact désactivé");
  if (card.pin && !card.wallet) facts.push(`code ${card.pin}`);
  let brandChoice = null;
  const actions = el("span", { className: "actions" });
  if (card.brands.length > 1) {
    brandChoice = el(
      "select",
      { title: "Marque choisie par le porteur", ariaLabel: `Marque pour ${card.label}` },
      el("option", { value: "", textContent: "Marque par défaut" }),
      ...card.brands.map((brand) => el("option", { value: brand, textContent: brand })),
    );
    brandChoice.dataset.testid = `brand-${card.key}`;
    actions.append(brandChoice);
  }
  const present = (mode) => () => {
    const body = { card: card.key, mode };
    if (brandChoice && brandChoice.value) body.brand = brandChoice.value;
    call("/api/card", body);
  };
  const tap = el("button", {
    type: "button",
    textContent: "Sans contact",
    disabled: !card.contactless,
    onclick: present("tap"),
  });
  tap.dataset.testid = `tap-${card.key}`;
  const insert = el("button", {
    type: "button",
    className: "secondary",
    textContent: "Insérer",
    disabled: card.wallet,
    onclick: present("insert"),
  });
  insert.dataset.testid = `insert-${card.key}`;
  cardButtons.push([card, tap, insert]);
  actions.append(el("span", { className: "buttons" }, tap, insert)); // kept side by side
  const about = el(
    "span",
    { className: "about" },
    el("span", { className: "name", textContent: card.label }),
    el("span", { className: "meta", textContent: facts.join(" · ") }),
  );
  const item = el("li", {}, about, actions);
  item.dataset.testid = `card-${card.key}`;
  return item;
}

// ------------------------------------------------------------------ message log
function fieldText(value) {
  if (Array.isArray(value)) return value.join(" | ");
  if (value !== null && typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function clock(entry) {
  // the wall-clock time the message passed (HH:MM:SS.mmm, local time)
  if (typeof entry.wall !== "number") return `${entry.at.toFixed(3).padStart(10)} s`;
  const at = new Date(entry.wall * 1000);
  const two = (n) => String(n).padStart(2, "0");
  const ms = String(at.getMilliseconds()).padStart(3, "0");
  return `${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())}.${ms}`;
}

function appendLog(item) {
  item.dataset.testid = "log-entry";
  const log = byTestId("log");
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.append(item);
  while (log.children.length > LOG_LIMIT) log.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function logTime(entry) {
  return el("span", {
    className: "at",
    textContent: `${clock(entry)}  `,
    title: `${entry.at.toFixed(3)} s depuis le démarrage du terminal`,
  });
}

function addLog(entry) {
  if (entry.type === "power") {
    // the terminal switched off (empty battery) or on again: a line of its own
    appendLog(el("li", { className: "power" }, logTime(entry), el("span", { textContent: entry.text })));
    return;
  }
  const message = entry.message;
  const fields = Object.entries(message)
    .filter(([name, value]) => !["type", "id", "in_reply_to"].includes(name) && value !== null && value !== "")
    .filter(([, value]) => !(Array.isArray(value) && value.length === 0))
    .map(([name, value]) => `${name}=${fieldText(value)}`)
    .join("  ");
  const reply = message.in_reply_to != null ? ` ↩ ${message.in_reply_to}` : "";
  const item = el(
    "li",
    { className: entry.direction, title: fields },
    logTime(entry),
    el("span", { className: "dir", textContent: DIRECTIONS[entry.direction] || entry.direction }),
    el("span", { className: "type", textContent: `${message.type} #${message.id}${reply}` }),
    el("span", { className: "fields", textContent: fields ? `  ${fields}` : "" }),
  );
  appendLog(item);
}

function showScenario(event) {
  const status = byTestId("scenario-status");
  const name = `Scénario « ${event.name} »`;
  if (event.status === "started") status.textContent = `${name} : en cours…`;
  else if (event.status === "step") status.textContent = `${name} : étape ${event.step} (${event.action}) jouée.`;
  else if (event.status === "finished") status.textContent = `${name} : terminé.`;
  else if (event.status === "failed") {
    status.textContent = `${name} : arrêté à l'étape ${event.step} (${event.action}).`;
    notify(event.message, event.reason || "");
  }
}

// ------------------------------------------------------------------ live events
function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/events`);
  const status = byTestId("connection");
  socket.onopen = () => {
    status.textContent = "En direct";
    status.classList.add("online");
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "hello") {
      byTestId("log").replaceChildren();
      message.log.forEach(addLog);
      render(message.state);
    } else if (message.type === "state") {
      render(message.state);
    } else if (message.type === "message" || message.type === "power") {
      addLog(message);
    } else if (message.type === "scenario") {
      showScenario(message);
    }
  };
  socket.onclose = () => {
    status.textContent = "Déconnecté du terminal — nouvelle tentative…";
    status.classList.remove("online");
    setTimeout(connect, 1000);
  };
}

async function loadCards() {
  try {
    const response = await fetch("/api/cards");
    const data = await response.json();
    renderCards(data.cards);
  } catch (error) {
    byTestId("wallet").replaceChildren(
      el("li", { className: "empty", textContent: "Catalogue des cartes indisponible." }),
    );
  }
}

// ------------------------------------------------------------------ controls
function wire() {
  document.querySelectorAll("[data-digit]").forEach((button) => {
    button.addEventListener("click", () => {
      if (pin.length < PIN_MAX) setPin(pin + button.dataset.digit);
    });
  });
  byTestId("pin-correction").addEventListener("click", () => setPin(pin.slice(0, -1)));
  byTestId("key-green").addEventListener("click", () => {
    if (pin) {
      const typed = pin;
      setPin("");
      call("/api/pin", { pin: typed });
    } else {
      call("/api/key", { key: "green" });
    }
  });
  byTestId("key-red").addEventListener("click", () => {
    setPin("");
    call("/api/key", { key: "red" });
  });
  byTestId("remove-card").addEventListener("click", () => call("/api/remove-card"));
  const battery = byTestId("battery-input");
  battery.addEventListener("input", () => {
    batteryTouched = true;
    byTestId("battery-level").textContent = `${battery.value} %`;
  });
  byTestId("power-on").addEventListener("click", async () => {
    // charged first: to the level chosen on the slider, else full if it is empty
    const body = { on: true };
    const chosen = Number(battery.value);
    if (batteryTouched && chosen > 0) body.battery = chosen;
    else if (current && current.battery === 0) body.battery = 100;
    await call("/api/power", body);
    batteryTouched = false;
    if (current) render(current);
  });
  byTestId("battery-apply").addEventListener("click", async () => {
    await call("/api/battery", { level: Number(battery.value) });
    batteryTouched = false;
    if (current) render(current);
  });
  byTestId("link-drop").addEventListener("click", () => call("/api/link/drop"));
  byTestId("scenario-load").addEventListener("click", async () => {
    const text = byTestId("scenario-input").value;
    if (!text.trim()) {
      notify("Collez d'abord un script de scénario.");
      return;
    }
    const loaded = await call("/api/scenario", { script: text }, { withReason: true });
    if (loaded) {
      const skipped = loaded.skipped.length ? ` ; ignorées ici : ${loaded.skipped.join(", ")}` : "";
      byTestId("scenario-summary").textContent =
        `Scénario « ${loaded.scenario} » chargé : ${loaded.steps.length} étape(s) du porteur${skipped}.`;
    }
  });
  byTestId("log-clear").addEventListener("click", () => byTestId("log").replaceChildren());
}

wire();
loadCards();
connect();
