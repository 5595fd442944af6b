// StepBlend console: sign up or in, copy the token, connect provider keys, make and revoke API keys,
// set the account's budget, see this month's usage.
// Plain JavaScript against the gateway's own HTTP API; nothing is loaded from elsewhere.
// Text from the API is only ever set with textContent, never parsed as HTML.
(() => {
  "use strict";

  const API = "/api/v1";
  const TOKEN_KEY = "stepblend.token";
  const SVG = "http://www.w3.org/2000/svg";
  const PROVIDERS = [
    ["openai", "OpenAI"],
    ["anthropic", "Anthropic"],
    ["groq", "Groq"],
    ["deepseek", "DeepSeek"],
    ["mistral", "Mistral"],
    ["together", "Together AI"],
    ["xai", "xAI"],
    ["azure", "Azure OpenAI"],
    ["bedrock", "AWS Bedrock"],
  ];
  const PROVIDER_NAMES = new Map(PROVIDERS);
  // Providers whose key has several fields (SPEC.md §11), each with its input; the first is the secret.
  const KEY_FIELDS = new Map([
    ["azure", [
      { name: "api_key", label: "API key", type: "password" },
      { name: "endpoint", label: "Endpoint", type: "url", placeholder: "https://NAME.openai.azure.com" },
      { name: "deployments", label: "Deployments (model=deployment, one a line)", type: "textarea", placeholder: "gpt-4o=my-gpt-4o" },
    ]],
    ["bedrock", [
      { name: "access_key_id", label: "access key ID", type: "password" },
      { name: "secret_access_key", label: "Secret access key", type: "password" },
      { name: "region", label: "Region", type: "text", placeholder: "us-east-1" },
      { name: "session_token", label: "Session token (optional)", type: "password", optional: true },
    ]],
  ]);
  // The front doors, by the ledger's `dialect`.
  const ENDPOINTS = new Map([
    ["openai_chat", "chat"],
    ["anthropic_messages", "messages"],
    ["openai_embeddings", "embeddings"],
    ["openai_responses", "responses"],
  ]);

  const $ = (id) => document.getElementById(id);
  const integer = new Intl.NumberFormat("en-US");
  const usd = new Intl.NumberFormat("en-US", {
    style: "currency", currency: "USD", minimumFractionDigits: 2, maximumFractionDigits: 6,
  });
  const clock = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  const dayName = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
  const monthName = new Intl.DateTimeFormat("en-US", { month: "long", year: "numeric", timeZone: "UTC" });
  const date = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });
  const recently = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  const DAY_S = 86400;

  // The account's API keys by id, as last listed: the usage table names each request's key.
  const apiKeysById = new Map();

  // ---- talking to the API -------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, error) {
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || "";
      this.param = error.param || "";
      this.apiMessage = error.message || "";
    }
  }

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  async function api(method, path, body) {
    const headers = { accept: "application/json" };
    const current = token();
    if (current) headers.authorization = `Bearer ${current}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let response;
    try {
      response = await fetch(API + path, {
        method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, {});
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) throw new ApiError(response.status, (data && data.error) || {});
    return data;
  }

  // An API error in words a person understands. `during` says what was being done.
  function explain(err, during) {
    if (!(err instanceof ApiError)) return "Something went wrong in this page. Reload it and try again.";
    const said = err.apiMessage;
    switch (err.status) {
      case 0:
        return "StepBlend could not be reached. Check that it is running and that you are online, then try again.";
      case 400:
        if (err.param === "password") return "The password must be at least 8 characters long.";
        if (err.param === "email") return "Enter a valid email address, like you@example.com.";
        if (err.param === "api_key") return "Paste the provider's API key into the field first.";
        if (err.param === "provider") return "StepBlend does not know that provider.";
        if (err.param === "endpoint") return "The endpoint must be your Azure resource's URL, like https://NAME.openai.azure.com.";
        if (err.param === "deployments") return `Check the deployments: ${said}`;
        if (err.param === "region") return "The region must be an AWS region name, like us-east-1.";
        if (err.param === "name") return "Give the key a name of at most 100 characters.";
        return said ? `StepBlend could not accept that: ${said}` : "StepBlend could not accept that request.";
      case 401:
        if (during === "login") {
          return said === "This account is disabled."
            ? "This account is disabled. Ask the StepBlend operator to enable it again."
            : "Wrong email or password.";
        }
        return "Your session has ended (the token expired or is no longer valid). Please sign in again.";
      case 403:
        if (err.code === "signup_disabled") return "Creating accounts is turned off here. Ask the StepBlend operator for an account.";
        return said || "You are not allowed to do that.";
      case 404:
        if (err.code === "key_not_found") return "That provider has no key connected.";
        if (err.code === "api_key_not_found") return "That API key is not in this account. Reload the page to see your keys.";
        return said || "StepBlend does not know that.";
      case 409:
        if (err.code === "account_exists") return "An account with this email already exists. Sign in instead.";
        return said || "That conflicts with the current state; reload and try again.";
      case 413:
        return "That is too large to send.";
      case 429:
        if (err.code === "plan_limit_exceeded") return "This account has used every request its plan allows this month.";
        return "Too many requests at once. Wait a moment and try again.";
      case 503:
        if (err.code === "api_keys_disabled") return said;
        return "StepBlend is temporarily unavailable: one of its services is not answering. Try again in a minute.";
      case 504:
        return "StepBlend took too long to answer. Try again.";
      default:
        return said
          ? `Something went wrong on StepBlend's side: ${said}`
          : `Something went wrong on StepBlend's side (HTTP ${err.status}). Try again.`;
    }
  }

  // ---- messages -----------------------------------------------------------------------

  function showError(text) {
    $("notice").textContent = "";
    $("error").textContent = text;
  }

  function showNotice(text) {
    $("error").textContent = "";
    $("notice").textContent = text;
  }

  function clearMessages() {
    $("error").textContent = "";
    $("notice").textContent = "";
  }

  // Runs `work` with `button` disabled; an error is shown in words, or handed to `onError`.
  async function busy(button, work, during) {
    button.disabled = true;
    try {
      await work();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401 && during !== "login") {
        signOut(explain(err, during));
      } else {
        showError(explain(err, during));
      }
    } finally {
      button.disabled = false;
    }
  }

  // ---- signing in and out -------------------------------------------------------------

  function setInvalid(input, invalid) {
    if (invalid) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  async function onAuth(event) {
    event.preventDefault();
    const button = event.submitter && event.submitter.dataset.action ? event.submitter : $("auth-form").querySelector("[data-action=login]");
    const action = button.dataset.action;
    const email = $("email");
    const password = $("password");
    const badEmail = !/^[^@\s]+@[^@\s]+\.[^@\s.]+$/.test(email.value.trim());
    const badPassword = password.value.length < 8;
    setInvalid(email, badEmail);
    setInvalid(password, badPassword);
    if (badEmail || badPassword) {
      showError(badEmail ? "Enter a valid email address, like you@example.com." : "The password must be at least 8 characters long.");
      (badEmail ? email : password).focus();
      return;
    }
    await busy(button, async () => {
      const body = { email: email.value.trim(), password: password.value };
      const answer = await api("POST", action === "signup" ? "/auth/signup" : "/auth/login", body);
      sessionStorage.setItem(TOKEN_KEY, answer.token);
      password.value = "";
      await enterDashboard(action === "signup" ? "Your account is ready. Copy your token below." : "Signed in.");
    }, "login");
  }

  function signOut(reason) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("dashboard").hidden = true;
    $("whoami").hidden = true;
    $("sign-in").hidden = false;
    $("token").value = "";
    $("keys").replaceChildren();
    $("apikey-rows").replaceChildren();
    apiKeysById.clear();
    hideNewKey();
    $("apikey-form").reset();
    $("budget").value = "";
    $("recent-rows").replaceChildren();
    $("chart").replaceChildren();
    if (reason) showError(reason);
    else showNotice("Signed out.");
    $("email").focus();
  }

  async function enterDashboard(greeting) {
    $("sign-in").hidden = true;
    $("dashboard").hidden = false;
    $("whoami").hidden = false;
    $("token").value = token();
    renderExample();
    renderKeys([]);
    if (greeting) showNotice(greeting);
    $("dashboard-title").focus();
    await refresh();
  }

  // ---- the token ----------------------------------------------------------------------

  function baseUrl() {
    return `${window.location.origin}${API}`;
  }

  function renderExample() {
    $("example").textContent = [
      "from openai import OpenAI",
      "",
      `client = OpenAI(api_key="YOUR_STEPBLEND_TOKEN", base_url="${baseUrl()}")`,
      "response = client.chat.completions.create(",
      '    model="lowest-cost", messages=[{"role": "user", "content": "Hello!"}])',
      "print(response.choices[0].message.content)",
      "",
      "# Claude clients: Anthropic's Messages API, routed to any connected model",
      "from anthropic import Anthropic",
      "",
      `client = Anthropic(api_key="YOUR_STEPBLEND_TOKEN", base_url="${window.location.origin}/api")`,
      'message = client.messages.create(model="balanced", max_tokens=256,',
      '    messages=[{"role": "user", "content": "Hello!"}])',
      "print(message.content[0].text)",
      "",
      "# Claude Code, in a shell:",
      `# ANTHROPIC_BASE_URL=${window.location.origin}/api ANTHROPIC_AUTH_TOKEN=YOUR_STEPBLEND_TOKEN \\`,
      "#   ANTHROPIC_MODEL=claude-sonnet-4-5 claude",
    ].join("\n");
  }

  // Copies the value of `field` (the token, a new API key), saying so with `noun`.
  async function copyField(field, noun) {
    const value = field.value;
    if (!value) return;
    const done = `${noun[0].toUpperCase()}${noun.slice(1)} copied to the clipboard.`;
    try {
      // The asynchronous clipboard exists only in secure contexts (https, localhost).
      if (!navigator.clipboard || !window.isSecureContext) throw new Error("no clipboard API");
      await navigator.clipboard.writeText(value);
      showNotice(done);
      return;
    } catch {
      // fall through to the selection-based copy
    }
    field.focus();
    field.select();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch {
      copied = false;
    }
    if (copied) showNotice(done);
    else showError(`This browser would not copy automatically. The ${noun} is selected: press Ctrl+C (⌘+C on a Mac) to copy it.`);
  }

  // ---- provider keys ------------------------------------------------------------------

  // What a connected key of several fields shows besides its masked secret: the endpoint and deployments.
  function describeFields(fields) {
    const parts = [];
    if (fields.endpoint) parts.push(String(fields.endpoint));
    if (fields.region) parts.push(String(fields.region));
    const deployments = Object.entries(fields.deployments || {}).map(([model, deployment]) => `${model}→${deployment}`);
    if (deployments.length) parts.push(deployments.join(", "));
    return parts.join(" · ");
  }

  // The inputs of a provider's key: one password field, or one per field of a key of several.
  // `typed`: what the inputs held before this render (by id), kept so that a reload of the list
  // (the one after signing in, or after another provider's key changed) does not wipe it.
  function keyInputs(provider, name, connected, typed) {
    const specs = KEY_FIELDS.get(provider) || [{ name: "api_key", label: "API key", type: "password" }];
    return specs.map((spec, index) => {
      const wrap = document.createElement("div");
      wrap.className = "key-field";
      const label = document.createElement("label");
      const input = document.createElement(spec.type === "textarea" ? "textarea" : "input");
      input.id = index === 0 ? `key-${provider}` : `key-${provider}-${spec.name}`;
      input.dataset.field = spec.name;
      if (spec.optional) input.dataset.optional = "true";
      // What the person typed, and whether it was marked wrong, survive a re-render.
      const kept = typed.get(input.id);
      input.value = kept ? kept.value : "";
      if (kept && kept.invalid) input.setAttribute("aria-invalid", "true");
      if (spec.type !== "textarea") input.type = spec.type;
      if (spec.type === "textarea") input.rows = 2;
      if (spec.placeholder) input.placeholder = spec.placeholder;
      input.autocomplete = "off";
      input.spellcheck = false;
      input.setAttribute("aria-describedby", `key-state-${provider}`);
      label.htmlFor = input.id;
      const what = index === 0 ? `${name} ${spec.label}` : `${name} ${spec.label.charAt(0).toLowerCase()}${spec.label.slice(1)}`;
      label.textContent = connected && index === 0 ? `New ${what}` : what;
      wrap.append(label, input);
      return wrap;
    });
  }

  function renderKeys(connected) {
    const byProvider = new Map(connected.map((k) => [k.provider, k]));
    const typed = new Map(
      [...$("keys").querySelectorAll("[data-field]")].map((input) => [
        input.id,
        { value: input.value, invalid: input.getAttribute("aria-invalid") === "true" },
      ]),
    );
    const items = PROVIDERS.map(([provider, name]) => {
      const stored = byProvider.get(provider);
      const key = stored && stored.masked_key;
      const li = document.createElement("li");
      li.className = "key-row";
      const form = document.createElement("form");
      form.className = "key-form";
      form.noValidate = true;
      form.dataset.provider = provider;
      form.setAttribute("aria-label", `${name} key`);

      const title = document.createElement("div");
      title.className = "key-name";
      title.textContent = name;

      const state = document.createElement("div");
      state.id = `key-state-${provider}`;
      state.className = key ? "key-state connected" : "key-state";
      if (key) {
        state.append("Connected ");
        const code = document.createElement("span");
        code.className = "masked";
        code.textContent = key;
        state.append(code);
        if (stored.fields) {
          const more = document.createElement("span");
          more.className = "key-detail";
          more.textContent = describeFields(stored.fields);
          state.append(more);
        }
      } else {
        state.textContent = "Not connected";
      }

      const field = document.createElement("div");
      field.className = KEY_FIELDS.has(provider) ? "key-fields" : "key-fields single";
      field.append(...keyInputs(provider, name, Boolean(key), typed));

      const actions = document.createElement("div");
      actions.className = "key-actions";
      const save = document.createElement("button");
      save.type = "submit";
      save.className = "button";
      save.textContent = key ? "Replace" : "Connect";
      save.setAttribute("aria-label", `${save.textContent} ${name} key`);
      actions.append(save);
      if (key) {
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "button danger";
        remove.textContent = "Remove";
        remove.setAttribute("aria-label", `Remove ${name} key`);
        remove.addEventListener("click", () => removeKey(provider, name, remove));
        actions.append(remove);
      }

      form.addEventListener("submit", (event) => {
        event.preventDefault();
        saveKey(provider, name, form, save);
      });
      form.append(title, state, field, actions);
      li.append(form);
      return li;
    });
    $("keys").replaceChildren(...items);
  }

  async function loadKeys() {
    const answer = await api("GET", "/account/keys");
    renderKeys(answer.data || []);
  }

  // "gpt-4o=my-gpt-4o" lines as {model: deployment}; null when a line is not one.
  function parseDeployments(text) {
    const out = {};
    for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
      const match = /^([^=:\s]+)\s*[=:]\s*(\S+)$/.exec(line);
      if (!match) return null;
      out[match[1]] = match[2];
    }
    return out;
  }

  async function saveKey(provider, name, form, button) {
    const inputs = [...form.querySelectorAll("[data-field]")];
    const body = {};
    for (const input of inputs) {
      const value = input.value.trim();
      const label = form.querySelector(`label[for="${input.id}"]`).textContent;
      if (!value && input.dataset.optional) continue;
      if (!value) {
        setInvalid(input, true);
        showError(input.dataset.field === "api_key" ? `Paste your ${name} API key into the field first.` : `Fill in the ${label} first.`);
        input.focus();
        return;
      }
      const parsed = input.dataset.field === "deployments" ? parseDeployments(value) : value;
      if (parsed === null) {
        setInvalid(input, true);
        showError("Write each deployment as model=deployment, one a line (gpt-4o=my-gpt-4o).");
        input.focus();
        return;
      }
      setInvalid(input, false);
      body[input.dataset.field] = parsed;
    }
    await busy(button, async () => {
      const answer = await api("PUT", `/account/keys/${encodeURIComponent(provider)}`, body);
      for (const input of inputs) input.value = "";
      await loadKeys();
      showNotice(`${name} key saved (${answer.masked_key}).`);
      const next = $(`key-${provider}`);
      if (next) next.focus();
    }, "keys");
  }

  async function removeKey(provider, name, button) {
    await busy(button, async () => {
      await api("DELETE", `/account/keys/${encodeURIComponent(provider)}`);
      await loadKeys();
      showNotice(`${name} key removed.`);
      const next = $(`key-${provider}`);
      if (next) next.focus();
    }, "keys");
  }

  // ---- API keys -----------------------------------------------------------------------

  // An optional number typed into `input`: null when empty, NaN when it is not one from `min` to `max`.
  function optionalNumber(input, whole, min, max) {
    const text = input.value.trim();
    if (!text) return null;
    const pattern = whole ? /^\d+$/ : /^(\d+(\.\d*)?|\.\d+)$/;
    const value = pattern.test(text) ? Number(text) : NaN;
    return value >= min && value <= max ? value : NaN;
  }

  // The create form as the API's body, or null after saying (and focusing) what is wrong.
  function readKeyForm() {
    const name = $("apikey-name");
    const budget = $("apikey-budget");
    const limit = $("apikey-limit");
    const rpm = $("apikey-rpm");
    const expires = $("apikey-expires");
    const models = $("apikey-models");
    const body = { name: name.value.trim() };
    const values = {
      monthly_budget_usd: optionalNumber(budget, false, 0, 999999.99),
      monthly_request_limit: optionalNumber(limit, true, 1, Number.MAX_SAFE_INTEGER),
      rpm: optionalNumber(rpm, true, 1, 1000000),
      expires_days: optionalNumber(expires, true, 1, 36500),
    };
    const allowed = models.value.split(",").map((m) => m.trim()).filter(Boolean);
    const problems = [
      [name, !body.name || body.name.length > 100, "Give the key a name of at most 100 characters."],
      [budget, Number.isNaN(values.monthly_budget_usd), "The monthly budget is an amount in US dollars, like 5 or 12.50."],
      [limit, Number.isNaN(values.monthly_request_limit), "Requests per month is a whole number, 1 or more."],
      [rpm, Number.isNaN(values.rpm), "Requests per minute is a whole number from 1 to 1,000,000."],
      [expires, Number.isNaN(values.expires_days), "The expiry is a whole number of days, from 1 to 36,500."],
      [models, allowed.length > 50 || allowed.some((m) => m.length > 128),
        "List at most 50 models, each a model id or strategy name of at most 128 characters."],
    ];
    for (const [input, bad] of problems) setInvalid(input, bad);
    const first = problems.find(([, bad]) => bad);
    if (first) {
      showError(first[2]);
      first[0].focus();
      return null;
    }
    if (values.monthly_budget_usd !== null) body.monthly_budget_usd = values.monthly_budget_usd;
    if (values.monthly_request_limit !== null) body.monthly_request_limit = values.monthly_request_limit;
    if (values.rpm !== null) body.rpm = values.rpm;
    if (values.expires_days !== null) body.expires_at = Math.floor(Date.now() / 1000) + values.expires_days * DAY_S;
    if (allowed.length) body.allowed_models = allowed;
    return body;
  }

  async function createApiKey(event) {
    event.preventDefault();
    const body = readKeyForm();
    if (!body) return;
    await busy($("create-apikey"), async () => {
      const created = await api("POST", "/account/api-keys", body);
      // Shown before anything else can fail: this answer is the only place the key exists.
      $("new-apikey-name").textContent = created.name;
      $("new-apikey-value").value = created.key;
      $("new-apikey").hidden = false;
      $("apikey-form").reset();
      showNotice(`API key “${created.name}” created. Copy it now: it will not be shown again.`);
      $("copy-apikey").focus();
      await loadApiKeys();
    }, "apikeys");
  }

  function hideNewKey() {
    $("new-apikey-value").value = "";
    $("new-apikey-name").textContent = "";
    $("new-apikey").hidden = true;
  }

  async function loadApiKeys() {
    const answer = await api("GET", "/account/api-keys");
    renderApiKeys(answer.data || []);
  }

  function renderApiKeys(keys) {
    apiKeysById.clear();
    for (const key of keys) apiKeysById.set(key.id, key);
    const newest = [...keys].sort((a, b) => b.created - a.created);
    const now = Date.now() / 1000;
    $("apikeys-empty").hidden = keys.length > 0;
    $("apikeys").hidden = keys.length === 0;
    $("apikey-rows").replaceChildren(...newest.map((key) => apiKeyRow(key, now)));
  }

  function apiKeyRow(key, now) {
    const tr = document.createElement("tr");
    tr.dataset.keyId = key.id;
    const expired = !key.revoked && key.expires_at !== null && key.expires_at <= now;
    const state = key.revoked ? "revoked" : expired ? "expired" : "active";
    tr.className = `apikey-row ${state}`;
    const name = document.createElement("div");
    name.className = "apikey-name";
    name.textContent = key.name;
    const hint = document.createElement("div");
    hint.className = "masked";
    hint.textContent = key.hint;
    const nameCell = cell(name, "apikey-name-cell");
    nameCell.append(hint);
    const status = document.createElement("span");
    status.className = `status ${state === "active" ? "completed" : "failed"}`;
    status.textContent = { active: "Active", revoked: "Revoked", expired: "Expired" }[state];
    const requests = integer.format(key.requests_this_month);
    const spend = usd.format(key.spend_this_month_usd);
    const actions = document.createElement("td");
    actions.className = "apikey-actions";
    if (!key.revoked) actions.append(revokeButton(key, tr));
    tr.append(
      nameCell,
      cell(moment(key.created, date)),
      cell(key.last_used ? moment(key.last_used, recently) : "Never"),
      cell(key.monthly_request_limit ? `${requests} / ${integer.format(key.monthly_request_limit)}` : requests, "num"),
      cell(key.monthly_budget_usd !== null ? `${spend} / ${usd.format(key.monthly_budget_usd)}` : spend, "num"),
      cell(limitsOf(key), "apikey-limits"),
      cell(status),
      actions,
    );
    return tr;
  }

  // What the Requests and Spend columns do not already say: rate, models, expiry.
  function limitsOf(key) {
    const parts = [];
    if (key.rpm) parts.push(`${integer.format(key.rpm)} requests/minute`);
    if (key.allowed_models && key.allowed_models.length) parts.push(`Models: ${key.allowed_models.join(", ")}`);
    if (key.expires_at) parts.push(`Expires ${date.format(new Date(key.expires_at * 1000))}`);
    if (!parts.length) return "–";
    const list = document.createElement("ul");
    list.className = "limits";
    for (const part of parts) {
      const li = document.createElement("li");
      li.textContent = part;
      list.append(li);
    }
    return list;
  }

  function moment(seconds, format) {
    const when = new Date(seconds * 1000);
    const time = document.createElement("time");
    time.dateTime = when.toISOString();
    time.textContent = format.format(when);
    return time;
  }

  function revokeButton(key, row) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button danger small";
    button.textContent = "Revoke";
    button.setAttribute("aria-label", `Revoke key ${key.name}`);
    button.addEventListener("click", () => askRevoke(key, row, button));
    return button;
  }

  // Revoking cannot be undone, so it takes a second, explicit step: a row under the key's.
  function askRevoke(key, row, button) {
    if (row.nextElementSibling && row.nextElementSibling.classList.contains("confirm-row")) {
      row.nextElementSibling.querySelector("button.secondary").focus();
      return;
    }
    const confirmRow = document.createElement("tr");
    confirmRow.className = "confirm-row";
    const td = document.createElement("td");
    td.colSpan = row.children.length;
    const box = document.createElement("div");
    box.className = "confirm";
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", `Revoke key ${key.name}?`);
    const question = document.createElement("p");
    question.className = "confirm-text";
    question.textContent = `Revoke “${key.name}”? Applications using it are refused from now on; this cannot be undone.`;
    const yes = document.createElement("button");
    yes.type = "button";
    yes.className = "button danger small";
    yes.textContent = "Yes, revoke";
    yes.setAttribute("aria-label", `Yes, revoke key ${key.name}`);
    const no = document.createElement("button");
    no.type = "button";
    no.className = "button secondary small";
    no.textContent = "Cancel";
    no.addEventListener("click", () => {
      confirmRow.remove();
      button.focus();
    });
    yes.addEventListener("click", () => revokeApiKey(key, yes));
    const buttons = document.createElement("div");
    buttons.className = "confirm-buttons";
    buttons.append(yes, no);
    box.append(question, buttons);
    td.append(box);
    confirmRow.append(td);
    row.after(confirmRow);
    no.focus();
  }

  async function revokeApiKey(key, button) {
    await busy(button, async () => {
      await api("DELETE", `/account/api-keys/${encodeURIComponent(key.id)}`);
      await loadApiKeys();
      showNotice(`API key “${key.name}” revoked. Requests with it are now refused.`);
      $("apikeys-title").focus();
    }, "apikeys");
  }

  // ---- the account's budget -----------------------------------------------------------

  function renderAccount(account) {
    $("who-email").textContent = account.email;
    $("who-plan").textContent = `${account.plan} plan`;
    const budget = account.monthly_budget_usd;
    const spend = account.spend_this_month_usd;
    $("stat-budget").textContent = budget === null ? "None" : usd.format(budget);
    $("clear-budget").hidden = budget === null;
    if (budget === null) {
      $("budget-text").textContent = "No account budget is set: only your API keys' own budgets bound the spend.";
    } else {
      const percent = budget > 0 ? Math.min(100, Math.round((100 * spend) / budget)) : 100;
      $("budget-text").textContent =
        `${usd.format(spend)} of the ${usd.format(budget)} monthly budget spent (${percent}%), ` +
        `${usd.format(Math.max(budget - spend, 0))} left.`;
    }
  }

  async function setBudget(event) {
    event.preventDefault();
    const input = $("budget");
    const value = optionalNumber(input, false, 0, 999999.99);
    const bad = value === null || Number.isNaN(value);
    setInvalid(input, bad);
    if (bad) {
      showError("The budget is an amount in US dollars a month, like 5 or 12.50.");
      input.focus();
      return;
    }
    await busy($("set-budget"), async () => {
      const account = await api("PATCH", "/account", { monthly_budget_usd: value });
      renderAccount(account);
      input.value = "";
      showNotice(`Account budget set to ${usd.format(account.monthly_budget_usd)} a month.`);
    }, "budget");
  }

  async function clearBudget() {
    await busy($("clear-budget"), async () => {
      renderAccount(await api("PATCH", "/account", { monthly_budget_usd: null }));
      showNotice("Account budget removed.");
      $("budget").focus();
    }, "budget");
  }

  // ---- usage --------------------------------------------------------------------------

  async function loadUsage() {
    const [account, usage, apiKeys] = await Promise.all([
      api("GET", "/account"), api("GET", "/account/usage?limit=50"), api("GET", "/account/api-keys"),
    ]);
    renderAccount(account);
    renderApiKeys(apiKeys.data || []);
    renderUsage(usage);
  }

  function renderUsage(usage) {
    const used = usage.requests_this_month;
    const limit = usage.monthly_limit;
    $("stat-requests").textContent = integer.format(used);
    $("stat-limit").textContent = limit ? integer.format(limit) : "Unlimited";
    $("stat-spend").textContent = usd.format(usage.spend_this_month_usd);
    const quota = $("quota");
    if (limit) {
      quota.hidden = false;
      quota.max = limit;
      quota.value = Math.min(used, limit);
      const percent = (100 * used) / limit;
      const shown = percent > 0 && percent < 1 ? "under 1" : integer.format(Math.round(percent));
      $("quota-text").textContent =
        `${integer.format(used)} of ${integer.format(limit)} requests used this month (${shown}%), ` +
        `${integer.format(Math.max(limit - used, 0))} left on the ${usage.plan} plan.`;
    } else {
      quota.hidden = true;
      $("quota-text").textContent = `${integer.format(used)} requests this month; the ${usage.plan} plan has no limit.`;
    }
    drawChart(usage.month, usage.daily || []);
    renderRecent(usage.data || []);
  }

  function renderRecent(rows) {
    $("recent-empty").hidden = rows.length > 0;
    $("recent").hidden = rows.length === 0;
    $("recent-rows").replaceChildren(...rows.map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.requestId = r.request_id;
      const status = document.createElement("span");
      status.className = `status ${r.status === "completed" ? "completed" : "failed"}`;
      status.textContent = r.status === "completed" ? "Completed" : `Failed${r.error_code ? ` (${r.error_code})` : ""}`;
      tr.append(
        cell(moment(r.created, clock)),
        cell(modelOf(r)),
        cell(PROVIDER_NAMES.get(r.provider) || r.provider || "–"),
        cell(keyOf(r.api_key_id), "key-cell"),
        cell(`${integer.format(r.prompt_tokens)} / ${integer.format(r.completion_tokens)}`, "num"),
        cell(usd.format(r.cost_usd), "num"),
        cell(latency(r.latency_ms), "num"),
        cell(status),
      );
      return tr;
    }));
  }

  // The model, and the front door the request came through (its `dialect`).
  function modelOf(r) {
    const model = document.createDocumentFragment();
    model.append(r.model || "–");
    const endpoint = document.createElement("span");
    endpoint.className = "endpoint";
    endpoint.textContent = ENDPOINTS.get(r.dialect) || r.dialect || "";
    if (endpoint.textContent) model.append(" ", endpoint);
    return model;
  }

  // Which credential made a request: an API key (its name and hint), or the account's token.
  function keyOf(id) {
    if (!id) return "Token (JWT)";
    const key = apiKeysById.get(id);
    if (!key) return id;
    const hint = document.createElement("span");
    hint.className = "masked";
    hint.textContent = key.hint;
    const both = document.createDocumentFragment();
    both.append(`${key.name} `, hint);
    return both;
  }

  function cell(content, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.append(content);
    return td;
  }

  function latency(ms) {
    return ms < 1000 ? `${integer.format(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  }

  // A bar per day of the month, drawn as inline SVG; days still to come are empty slots.
  function drawChart(month, daily) {
    const [year, mon] = (month || "").split("-").map(Number);
    if (!year || !mon) {
      $("chart").replaceChildren();
      return;
    }
    const days = new Date(Date.UTC(year, mon, 0)).getUTCDate();
    const counts = new Array(days).fill(0);
    for (const d of daily) {
      const day = Number(d.date.slice(8, 10));
      if (day >= 1 && day <= days) counts[day - 1] = d.requests;
    }
    const today = daily.length ? Number(daily[daily.length - 1].date.slice(8, 10)) : 0;
    const top = niceCeiling(Math.max(1, ...counts));
    const width = 720, height = 200, left = 44, right = 8, topPad = 12, bottom = 26;
    const plotW = width - left - right, plotH = height - topPad - bottom;
    const slot = plotW / days, barW = Math.max(2, slot * 0.7);

    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "chart-title chart-desc" });
    const total = counts.reduce((a, b) => a + b, 0);
    const busiest = counts.indexOf(Math.max(...counts));
    const title = el("title", { id: "chart-title" });
    title.textContent = `Requests per day, ${monthName.format(new Date(Date.UTC(year, mon - 1, 1)))}`;
    const desc = el("desc", { id: "chart-desc" });
    desc.textContent = total
      ? `${integer.format(total)} requests so far this month; the busiest day was ${dayLabel(year, mon, busiest + 1)} with ${integer.format(counts[busiest])}.`
      : "No requests counted yet this month.";
    svg.append(title, desc);

    for (const value of [0, top / 2, top]) {
      const y = topPad + plotH - (value / top) * plotH;
      svg.append(el("line", { class: "grid", x1: left, x2: width - right, y1: y, y2: y }));
      const label = el("text", { class: "axis-label", x: left - 6, y: y + 4, "text-anchor": "end" });
      label.textContent = integer.format(value);
      svg.append(label);
    }
    counts.forEach((value, index) => {
      const day = index + 1;
      const x = left + index * slot + (slot - barW) / 2;
      if (value > 0) {
        const h = Math.max(1, (value / top) * plotH);
        const bar = el("rect", {
          class: day === today ? "bar today" : "bar", x, y: topPad + plotH - h, width: barW, height: h, rx: 1.5,
        });
        const tip = el("title", {});
        tip.textContent = `${dayLabel(year, mon, day)}: ${integer.format(value)} request${value === 1 ? "" : "s"}`;
        bar.append(tip);
        svg.append(bar);
      }
      if (day === 1 || day % 5 === 0 || day === days) {
        const label = el("text", { class: "axis-label", x: left + index * slot + slot / 2, y: height - 8, "text-anchor": "middle" });
        label.textContent = String(day);
        svg.append(label);
      }
    });
    if (!total) {
      const empty = el("text", { class: "empty-label", x: left + plotW / 2, y: topPad + plotH / 2, "text-anchor": "middle" });
      empty.textContent = "No requests yet this month";
      svg.append(empty);
    }
    $("chart").replaceChildren(svg);
  }

  function el(name, attributes) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    return node;
  }

  function niceCeiling(value) {
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 5, 10]) if (value <= step * power) return Math.max(step * power, 2);
    return 10 * power;
  }

  function dayLabel(year, mon, day) {
    return dayName.format(new Date(Date.UTC(year, mon - 1, day)));
  }

  // ---- refreshing ---------------------------------------------------------------------

  async function refresh() {
    await Promise.all([loadKeys(), loadUsage()]);
  }

  async function onRefresh() {
    await busy($("refresh"), async () => {
      await refresh();
      showNotice("Usage updated.");
    }, "refresh");
  }

  // ---- start --------------------------------------------------------------------------

  function start() {
    for (const node of document.querySelectorAll(".api-base, #base-url")) node.textContent = baseUrl();
    $("auth-form").addEventListener("submit", onAuth);
    $("sign-out").addEventListener("click", () => signOut());
    $("copy-token").addEventListener("click", () => copyField($("token"), "token"));
    $("apikey-form").addEventListener("submit", createApiKey);
    $("copy-apikey").addEventListener("click", () => copyField($("new-apikey-value"), "API key"));
    $("dismiss-apikey").addEventListener("click", () => {
      hideNewKey();
      $("apikey-name").focus();
    });
    $("budget-form").addEventListener("submit", setBudget);
    $("clear-budget").addEventListener("click", clearBudget);
    $("refresh").addEventListener("click", onRefresh);
    // Coming back to the tab (say, after running a script) shows fresh numbers.
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && token() && !$("dashboard").hidden) {
        refresh().catch(() => {});
      }
    });
    if (token()) {
      enterDashboard().catch((err) => {
        if (err instanceof ApiError && err.status === 401) signOut(explain(err, "refresh"));
        else showError(explain(err, "refresh"));
      });
    } else {
      $("email").focus();
    }
  }

  start();
})();
