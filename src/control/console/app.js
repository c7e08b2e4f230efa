// Sluice console: a page over the admin API (/v1). Every action is an API call with the
// signed-in token; the API enforces roles, the page only hides what the role cannot do.
// No innerHTML anywhere: everything shown is set as text.
'use strict';

const state = { token: sessionStorage.getItem('sluice.token'), me: null, timer: null };

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(method, path, body) {
  const headers = { Authorization: 'Bearer ' + state.token };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch('/v1' + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { raw: text }; }
  if (!r.ok) {
    const e = new Error((data && data.error && data.error.message) || r.statusText);
    e.status = r.status;
    e.detail = data && data.error;
    throw e;
  }
  return data;
}

const can = (p) => !!(state.me && state.me.allowed.includes(p));
const enc = encodeURIComponent;

// Shows an API error: next to the field it names when the form has it, else on the form.
function showError(form, e) {
  form.querySelectorAll('.field-error').forEach((n) => n.remove());
  const box = form.querySelector('.error');
  const fields = (e.detail && (e.detail.errors || (e.detail.field ? [e.detail] : []))) || [];
  let placed = false;
  for (const f of fields) {
    const leaf = String(f.field || '').split(/[.[]/)[0];
    const input = form.querySelector(`[name="${CSS.escape(leaf)}"]`);
    if (input) {
      input.closest('label').append(h('span', { class: 'field-error', 'data-field': leaf }, f.message));
      placed = true;
    }
  }
  if (box) box.textContent = placed ? '' : e.message;
}

function form(fields, submit, onSubmit) {
  const err = h('p', { class: 'error' });
  const f = h('form', { class: 'row' },
    fields.map(([name, label, attrs]) => h('label', {}, label, h('input', { name, ...(attrs || {}) }))),
    h('button', { type: 'submit' }, submit), err);
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const values = Object.fromEntries(new FormData(f).entries());
    try {
      err.textContent = '';
      f.querySelectorAll('.field-error').forEach((n) => n.remove());
      await onSubmit(values, f);
    } catch (e) { showError(f, e); }
  });
  return f;
}

function table(head, rows) {
  return h('table', {}, h('thead', {}, h('tr', {}, head.map((c) => h('th', {}, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))));
}

function button(label, cls, onclick, attrs) {
  return h('button', { type: 'button', class: cls, onclick, ...(attrs || {}) }, label);
}

// A value shown once, with a copy button.
function once(title, value) {
  const code = h('div', { class: 'secret-once', id: 'secret-once' }, value);
  const copy = button('Copy', 'secondary', async () => {
    try { await navigator.clipboard.writeText(value); copy.textContent = 'Copied'; } catch (_) { copy.textContent = 'Select and copy'; }
  });
  return h('div', { class: 'card' }, h('h2', {}, title),
    h('p', { class: 'muted' }, 'Shown once: it is not stored in readable form.'), code, copy);
}

// ---- metrics (key state and request rate, live) ----
async function keyMetrics() {
  const r = await fetch('/metrics');
  const text = await r.text();
  const out = { state: {}, requests: {}, at: Date.now() };
  for (const line of text.split('\n')) {
    const m = line.match(/^(sluice_key_state|sluice_upstream_requests_total)\{([^}]*)\} (\S+)$/);
    if (!m) continue;
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    const id = labels.provider + '/' + labels.key;
    if (m[1] === 'sluice_key_state' && Number(m[3]) === 1) out.state[id] = labels.state;
    if (m[1] === 'sluice_upstream_requests_total') out.requests[id] = Number(m[3]);
  }
  return out;
}

// ---- pages ----
const pages = {};

pages.providers = async (main) => {
  let providers = (await api('GET', '/providers')).items;
  let prev = null;
  // Live cells only: state and request rate are updated in place, so a weight being typed is
  // never overwritten.
  const tick = async () => {
    const m = await keyMetrics();
    main.querySelectorAll('[data-state-of]').forEach((el) => {
      const id = el.dataset.stateOf;
      const st = m.state[id] || 'unknown';
      el.textContent = st;
      el.className = 'badge state-' + st;
      el.dataset.state = st;
    });
    main.querySelectorAll('[data-rate-of]').forEach((el) => {
      const id = el.dataset.rateOf;
      if (prev && id in prev.requests && id in m.requests) {
        el.textContent = ((m.requests[id] - prev.requests[id]) / ((m.at - prev.at) / 1000)).toFixed(1) + '/s';
      }
    });
    prev = m;
  };
  const refresh = async () => {
    providers = (await api('GET', '/providers')).items;
    render();
    await tick();
  };
  const patchKey = async (provider, id, body, err) => {
    try {
      await api('PATCH', `/providers/${enc(provider)}/keys/${enc(id)}`, body);
      await refresh();
    } catch (e) { err.textContent = e.message; }
  };
  const render = () => {
    // Counted, so a test (or anything watching) can tell the table was redrawn.
    document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
    main.replaceChildren(h('h1', {}, 'Providers and key pools'));
    for (const p of providers) {
      const err = h('p', { class: 'error' });
      const rows = (p.keys || []).map((k) => {
        const id = p.name + '/' + k.id;
        const weight = h('input', { class: 'narrow', type: 'number', min: 0, value: k.weight, name: 'weight', 'aria-label': 'weight of ' + k.id });
        const actions = can('key_update') ? [
          weight,
          button('Set weight', 'secondary', () => patchKey(p.name, k.id, { weight: Number(weight.value) }, err), { 'data-action': 'set-weight', 'data-key': k.id }),
          button('Drain', 'secondary', () => patchKey(p.name, k.id, { weight: 0 }, err), { 'data-action': 'drain', 'data-key': k.id }),
        ] : [h('span', { 'data-weight-of': id }, String(k.weight))];
        if (can('key_delete')) {
          actions.push(button('Remove', 'danger', async () => {
            if (!confirm(`Remove key ${k.id} of ${p.name}?`)) return;
            try { await api('DELETE', `/providers/${enc(p.name)}/keys/${enc(k.id)}`); await refresh(); } catch (e) { err.textContent = e.message; }
          }, { 'data-action': 'remove', 'data-key': k.id }));
        }
        return [k.id, h('span', { class: 'badge', 'data-state-of': id }, k.enabled === false ? 'disabled' : '…'),
          h('span', { 'data-rate-of': id }, '–'), h('span', { class: 'row' }, actions)];
      });
      const card = h('div', { class: 'card', 'data-provider': p.name },
        h('h2', {}, p.name, ' ', h('span', { class: 'badge' }, p.kind)),
        h('p', { class: 'muted' }, p.base_url, ' · credentials: ', p.credentials || 'centralized'),
        table(['Key', 'State', 'Requests', 'Weight'], rows), err);
      if (can('key_create')) {
        card.append(form([['id', 'Key id', { required: true }], ['value', 'Key (stored as a secret)', { type: 'password', required: true }], ['weight', 'Weight', { type: 'number', value: 1, class: 'narrow' }]],
          'Add key', async (v) => {
            await api('POST', `/providers/${enc(p.name)}/keys`, { id: v.id, value: v.value, weight: Number(v.weight || 1) });
            await refresh();
          }));
      }
      main.append(card);
    }
  };
  render();
  await tick();
  state.timer = setInterval(tick, 2000);
};

pages.tokens = async (main) => {
  const shown = h('div', {});
  const list = h('div', { class: 'card' });
  const fill = async () => {
    const items = (await api('GET', '/tokens')).items;
    list.replaceChildren(table(['Id', 'Name', 'Owner', 'Scopes', 'Expires', 'Last used', ''], items.map((t) => [
      t.id, t.name || '', t.owner || '', (t.scopes || []).join(' '), t.expires_at || 'never',
      t.revoked_at ? h('span', { class: 'badge state-quarantined' }, 'revoked') : (t.last_used_at || 'never'),
      h('span', { class: 'row' }, [
        !t.revoked_at && can('token_rotate') && button('Rotate', 'secondary', async () => {
          const r = await api('POST', `/tokens/${enc(t.id)}/rotate`, {});
          shown.replaceChildren(once(`New token for ${t.id}`, r.token));
          await fill();
        }, { 'data-action': 'rotate', 'data-token': t.id }),
        !t.revoked_at && can('token_revoke') && button('Revoke', 'danger', async () => {
          if (!confirm(`Revoke ${t.id}?`)) return;
          await api('POST', `/tokens/${enc(t.id)}/revoke`, {});
          await fill();
        }, { 'data-action': 'revoke', 'data-token': t.id }),
      ])])));
  };
  main.replaceChildren(h('h1', {}, 'Tokens'), shown);
  if (can('token_create')) {
    main.append(h('div', { class: 'card' }, h('h2', {}, 'Create a token'),
      form([['name', 'Name'], ['owner', 'Owner'], ['scopes', 'Scopes (space-separated)'], ['expires_in', 'Expires in (e.g. 90d)']],
        'Create', async (v, f) => {
          const body = { name: v.name || null, owner: v.owner || null, scopes: (v.scopes || '').split(/\s+/).filter(Boolean), expires_in: v.expires_in || null };
          const r = await api('POST', '/tokens', body);
          shown.replaceChildren(once(`Token ${r.id}`, r.token));
          f.reset();
          await fill();
        })));
  }
  main.append(list);
  await fill();
};

pages.secrets = async (main) => {
  const [secrets, providers] = await Promise.all([api('GET', '/secrets'), api('GET', '/providers').catch(() => ({ items: [] }))]);
  const users = {};
  for (const p of providers.items) for (const k of p.keys || []) {
    const m = /^secret:(.+)$/.exec(k.secret_ref || '');
    if (m) (users[m[1]] = users[m[1]] || []).push(`${p.name}/${k.id}`);
  }
  const rows = secrets.items.map((s) => [s.name,
    Object.entries(s.labels || {}).map(([k, v]) => h('span', { class: 'badge' }, `${k}=${v}`)),
    (s.scopes || []).map((x) => h('span', { class: 'badge' }, x)), (users[s.name] || []).join(', ') || '–',
    can('secret_update') ? form([['value', 'New value', { type: 'password', required: true }]], 'Set', async (v, f) => {
      await api('PATCH', `/secrets/${enc(s.name)}`, { value: v.value });
      f.reset(); f.querySelector('.error').textContent = 'Updated.';
    }) : '']);
  main.replaceChildren(h('h1', {}, 'Secrets'), h('p', { class: 'muted' }, 'Values are never shown back.'),
    h('div', { class: 'card' }, table(['Name', 'Labels', 'Scopes', 'Used by', ''], rows)));
  if (can('secret_create')) {
    main.append(h('div', { class: 'card' }, h('h2', {}, 'New secret'),
      form([['name', 'Name', { required: true }], ['value', 'Value', { type: 'password', required: true }]], 'Create', async (v) => {
        await api('POST', '/secrets', { name: v.name, value: v.value }); route();
      })));
  }
};

const COLORS = ['#1f6feb', '#e36209', '#2da44e', '#8250df', '#cf222e', '#0598bc', '#bf8700', '#6e7781'];

// A stacked bar chart (SVG) of `series` (group → values per bucket).
function chart(title, buckets, series, start, step) {
  const groups = Object.keys(series);
  const totals = buckets.map((_, i) => groups.reduce((a, g) => a + (series[g][i] || 0), 0));
  const max = Math.max(1, ...totals);
  const W = 800, H = 200, bw = W / Math.max(1, buckets.length);
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H + 20}`);
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', title);
  buckets.forEach((_, i) => {
    let y = H;
    groups.forEach((g, j) => {
      const v = series[g][i] || 0;
      if (!v) return;
      const hgt = (v / max) * (H - 10);
      y -= hgt;
      const r = document.createElementNS(ns, 'rect');
      r.setAttribute('x', i * bw + 1); r.setAttribute('y', y);
      r.setAttribute('width', Math.max(1, bw - 2)); r.setAttribute('height', hgt);
      r.setAttribute('fill', COLORS[j % COLORS.length]);
      const t = document.createElementNS(ns, 'title');
      t.textContent = `${g}: ${v} at ${new Date((start + i * step) * 1000).toISOString()}`;
      r.append(t);
      svg.append(r);
    });
  });
  const label = document.createElementNS(ns, 'text');
  label.setAttribute('x', 4); label.setAttribute('y', H + 16); label.setAttribute('font-size', 12);
  label.textContent = `max ${max} per ${step >= 3600 ? step / 3600 + ' h' : step / 60 + ' min'}`;
  svg.append(label);
  return h('div', { class: 'card', 'data-chart': title }, h('h2', {}, title), svg,
    h('div', { class: 'legend' }, groups.map((g, j) => h('span', { style: `color:${COLORS[j % COLORS.length]}` }, '■ ' + g))));
}

pages.usage = async (main, params) => {
  const by = params.get('by') || 'provider';
  const hours = Number(params.get('hours') || 24);
  const bucket = Number(params.get('bucket') || (hours <= 2 ? 60 : 3600));
  const u = await api('GET', `/usage?by=${enc(by)}&hours=${hours}&bucket=${bucket}`);
  const pick = (what) => Object.fromEntries(Object.entries(u.series).map(([g, s]) => [g, s[what]]));
  const buckets = Array.from({ length: u.buckets }, (_, i) => i);
  const select = h('select', { name: 'by', onchange: () => { location.hash = `#/usage?by=${select.value}&hours=${hours}`; } },
    ['provider', 'model', 'principal'].map((b) => h('option', { value: b, selected: b === by }, b)));
  main.replaceChildren(h('h1', {}, 'Usage'),
    h('div', { class: 'row' }, h('label', {}, 'By', select), h('span', { class: 'muted' }, `last ${hours} h, from the audit records`)),
    chart('Requests', buckets, pick('requests'), u.start, u.bucket_seconds),
    chart('Tokens', buckets, pick('tokens'), u.start, u.bucket_seconds),
    chart('Spend (micro-USD)', buckets, pick('micro_usd'), u.start, u.bucket_seconds));
};

pages.limits = async (main) => {
  const [limits, budgets] = await Promise.all([api('GET', '/limits'), api('GET', '/budgets')]);
  const sel = (x) => ['route', 'provider', 'owner', 'token', 'app'].filter((k) => x[k]).map((k) => h('span', { class: 'badge' }, `${k}: ${x[k]}`));
  const cap = (x) => [['requests_per_second', '/s'], ['requests_per_minute', '/min'], ['tokens_per_minute', ' tokens/min'], ['concurrent', ' in flight']]
    .filter(([k]) => x[k] != null).map(([k, u]) => `${x[k]}${u}`).join(', ');
  main.replaceChildren(h('h1', {}, 'Limits and budgets'),
    h('div', { class: 'card' }, h('h2', {}, 'Limits'), table(['Name', 'Applies to', 'Per', 'Allowance'],
      limits.items.map((l) => [l.name, sel(l), l.per || 'all', cap(l)]))),
    h('div', { class: 'card' }, h('h2', {}, 'Budgets'), table(['Name', 'Applies to', 'Period', 'Cap', 'Spent'],
      budgets.items.map((b) => [b.name, sel(b), b.period + (b.window_hours ? ` (${b.window_hours} h)` : ''),
        [b.usd != null ? `$${b.usd}` : '', b.tokens != null ? `${b.tokens} tokens` : ''].filter(Boolean).join(' / '),
        b.spent ? `$${Number(b.spent.usd).toFixed(4)} / ${b.spent.tokens} tokens` : '–']))));
};

// A resource list with its main fields and a delete button (with the permission).
function resourcePage(title, path, kind, columns, extra) {
  return async (main) => {
    const items = (await api('GET', path)).items;
    main.replaceChildren(h('h1', {}, title));
    const rows = items.map((x) => [...columns.map(([, f]) => f(x)),
      can(`${kind}_delete`) ? button('Delete', 'danger', async () => {
        if (!confirm(`Delete ${x.name}?`)) return;
        await api('DELETE', `${path}/${enc(x.name)}`); route();
      }, { 'data-action': 'delete', 'data-name': x.name }) : '']);
    main.append(h('div', { class: 'card' }, items.length ? table([...columns.map(([c]) => c), ''], rows) : h('p', { class: 'muted' }, 'None yet.')));
    if (extra) await extra(main, items);
  };
}

const chips = (xs) => (xs || []).map((x) => h('span', { class: 'badge' }, x));

pages.oauth = async (main) => {
  const [providers, presets] = await Promise.all([
    api('GET', '/oauth-providers'), fetch('/ui/presets.json').then((r) => r.json()),
  ]);
  const connections = can('oauth_connection_list')
    ? (await api('GET', '/oauth/connections').catch(() => ({ data: [] }))).data || [] : [];
  main.replaceChildren(h('h1', {}, 'OAuth providers'));
  const rows = providers.items.map((x) => [
    h('span', {}, x.display_name || x.name, ' ', h('span', { class: 'muted' }, x.name)),
    chips(x.grant_types),
    h('span', { class: 'badge ' + (x.enabled === false ? 'state-disabled' : 'state-healthy') }, x.enabled === false ? 'disabled' : 'enabled'),
    chips(x.scopes),
    h('code', { 'data-redirect': x.name }, x.redirect_uri || ''),
    can('oauth_provider_delete') ? button('Delete', 'danger', async () => {
      if (!confirm(`Delete ${x.name}?`)) return;
      await api('DELETE', `/oauth-providers/${enc(x.name)}`); route();
    }, { 'data-action': 'delete', 'data-name': x.name }) : '']);
  main.append(h('div', { class: 'card' }, providers.items.length
    ? table(['Provider', 'Grant types', 'Status', 'Scopes', 'Redirect URI to register', ''], rows)
    : h('p', { class: 'muted' }, 'None yet.')));
  if (can('oauth_provider_create')) {
    const f = form([
      ['name', 'Name', { required: true }], ['display_name', 'Display name'],
      ['client_id', 'Client id', { required: true }], ['client_secret', 'Client secret (stored as a secret)', { type: 'password' }],
      ['authorization_endpoint', 'Authorization endpoint'], ['token_endpoint', 'Token endpoint'],
      ['revocation_endpoint', 'Revocation endpoint'], ['scopes', 'Scopes (space-separated)'],
    ], 'Create', async (v) => {
      let ref = null;
      if (v.client_secret) {
        ref = `OAUTH_${v.name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_CLIENT_SECRET`;
        await api('POST', '/secrets', { name: ref, value: v.client_secret, scopes: ['mcp'], labels: { 'oauth-provider': v.name } });
      }
      const body = { name: v.name, client_id: v.client_id, scopes: (v.scopes || '').split(/\s+/).filter(Boolean) };
      for (const k of ['display_name', 'authorization_endpoint', 'token_endpoint', 'revocation_endpoint']) if (v[k]) body[k] = v[k];
      if (ref) body.client_secret_ref = ref;
      else body.token_endpoint_auth_method = 'none';
      try {
        await api('POST', '/oauth-providers', body);
      } catch (e) {
        if (ref) await api('DELETE', `/secrets/${enc(ref)}`).catch(() => {});
        throw e;
      }
      route();
    });
    const preset = h('select', { name: 'preset', 'aria-label': 'preset' }, h('option', { value: '' }, 'Custom'),
      presets.map((p) => h('option', { value: p.name }, p.display_name)));
    preset.addEventListener('change', () => {
      const p = presets.find((x) => x.name === preset.value);
      if (!p) return;
      const set = (n, val) => { f.querySelector(`[name=${n}]`).value = val || ''; };
      set('name', p.name); set('display_name', p.display_name);
      set('authorization_endpoint', p.authorization_endpoint); set('token_endpoint', p.token_endpoint);
      set('revocation_endpoint', p.revocation_endpoint); set('scopes', p.scopes.join(' '));
    });
    main.append(h('div', { class: 'card' }, h('h2', {}, 'Add a provider'),
      h('label', {}, 'Start from a preset', preset), f));
  }
  if (connections.length) {
    main.append(h('div', { class: 'card' }, h('h2', {}, "Users' connections"),
      table(['Provider', 'User', 'Scopes', 'Expires', ''], connections.map((c) => [c.provider, c.principal, chips(c.scopes),
        c.expires_at ? new Date(c.expires_at * 1000).toISOString() : 'never',
        can('oauth_connection_delete') ? button('Disconnect', 'danger', async () => {
          await api('DELETE', `/oauth/connections/${enc(c.provider)}?principal=${enc(c.principal)}`); route();
        }, { 'data-action': 'disconnect' }) : '']))));
  }
};

pages.mcp = resourcePage('MCP servers', '/mcp-servers', 'mcp_server', [
  ['Name', (x) => x.name], ['Upstream', (x) => x.url || (x.members ? h('span', {}, 'group of ', chips(x.members)) : '')],
  ['Upstream auth', (x) => h('span', { class: 'badge' }, typeof x.auth === 'string' ? x.auth : JSON.stringify(x.auth || 'none'))],
  ['Scopes', (x) => chips(x.scopes)], ['Clients connect to', (x) => h('code', {}, x.endpoint || `/mcp/${x.name}`)],
], async (main) => {
  // The MCP clients people signed in with (Sluice as the authorization server), revocable.
  if (!can('oauth_client_list')) return;
  const clients = (await api('GET', '/oauth-clients')).items;
  const rows = clients.map((c) => [c.client_name, h('code', {}, c.client_id), (c.redirect_uris || []).join(' '),
    c.last_used_at || 'never', can('oauth_client_revoke') ? button('Revoke', 'danger', async () => {
      if (!confirm(`Revoke ${c.client_name}? Its tokens stop working everywhere.`)) return;
      await api('DELETE', `/oauth-clients/${enc(c.client_id)}`); route();
    }, { 'data-action': 'revoke-client', 'data-client': c.client_id }) : '']);
  main.append(h('div', { class: 'card', id: 'oauth-clients' }, h('h2', {}, 'Signed-in MCP clients'),
    clients.length ? table(['Client', 'Id', 'Redirect URIs', 'Last used', ''], rows) : h('p', { class: 'muted' }, 'None yet.')));
});

pages.agents = async (main) => {
  const [agents, apps] = await Promise.all([api('GET', '/agents'),
    can('app_list') ? api('GET', '/apps') : Promise.resolve({ items: [] })]);
  const shown = h('div', {});
  main.replaceChildren(h('h1', {}, 'Agents'), shown);
  if (!agents.items.length) main.append(h('div', { class: 'card' }, h('p', { class: 'muted' }, 'None yet.')));
  for (const a of agents.items) {
    const rows = (a.environments || []).map((e) => {
      const oauth = e.auth === 'oauth';
      const actions = [];
      if (can('agent_update') && a.source !== 'file') {
        actions.push(button(oauth ? 'Turn OAuth off' : 'Turn OAuth on', 'secondary', async () => {
          const doc = JSON.parse(JSON.stringify(a));
          for (const k of ['source', 'created_at', 'updated_at', 'invoke_urls']) delete doc[k];
          doc.environments.find((x) => x.name === e.name).auth = oauth ? 'token' : 'oauth';
          const r = await api('PUT', `/agents/${enc(a.name)}`, doc);
          const p = (r.provisioned || [])[0] || (r.provisioned && r.provisioned[e.name]);
          await route();
          if (p && p.client_secret) document.getElementById('main').children[1].replaceChildren(once(`App ${p.client_id} for ${a.name}/${e.name}`, p.client_secret));
        }, { 'data-action': 'oauth-toggle', 'data-env': e.name }));
      }
      if (oauth && can('agent_test_token')) {
        actions.push(button('Test', 'secondary', async () => {
          const t = await api('POST', `/agents/${enc(a.name)}/environments/${enc(e.name)}/test-token`, {});
          shown.replaceChildren(h('div', { class: 'card', id: 'test-token' }, h('h2', {}, `Test ${a.name}/${e.name}`),
            h('p', {}, 'Invoke URL: ', h('code', {}, t.invoke_url)),
            once(`A ${Math.round(t.expires_in / 60)}-minute test token`, t.access_token),
            h('p', { class: 'muted' }, 'Send a request with it:'), h('pre', { class: 'secret-once' }, t.curl)));
        }, { 'data-action': 'test', 'data-env': e.name }));
      }
      if (oauth && can('app_create')) {
        actions.push(button('New app', 'secondary', async () => {
          const r = await api('POST', `/agents/${enc(a.name)}/environments/${enc(e.name)}/apps`, {});
          shown.replaceChildren(once(`App ${r.client_id} (client credentials)`, r.client_secret));
        }, { 'data-action': 'new-app', 'data-env': e.name }));
      }
      const envApps = apps.items.filter((x) => x.agent === a.name && x.env === e.name);
      return [e.name, h('span', { class: 'badge' + (oauth ? ' state-healthy' : '') }, `auth: ${e.auth || 'token'}`),
        h('code', {}, (a.invoke_urls || {})[e.name] || `/agents/${a.name}/${e.name}`), e.url,
        envApps.map((x) => h('div', {}, h('code', {}, x.client_id))), h('span', { class: 'row' }, actions)];
    });
    main.append(h('div', { class: 'card', 'data-agent': a.name }, h('h2', {}, a.display_name || a.name),
      table(['Environment', 'Auth', 'Invoke URL', 'Upstream', 'Apps', ''], rows)));
  }
};

// ---- shell ----
async function route() {
  clearInterval(state.timer);
  const main = document.getElementById('main');
  const [path, query] = (location.hash.slice(2) || 'providers').split('?');
  const page = pages[path] || pages.providers;
  document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.getAttribute('href') === '#/' + path));
  try {
    await page(main, new URLSearchParams(query || ''));
  } catch (e) {
    if (e.status === 401) return signOut();
    main.replaceChildren(h('div', { class: 'card' }, h('p', { class: 'error' }, e.message)));
  }
  document.body.dataset.ready = path;
}

function signOut() {
  sessionStorage.removeItem('sluice.token');
  location.hash = '';
  location.reload();
}

async function start() {
  document.getElementById('signout').addEventListener('click', signOut);
  const f = document.getElementById('signin');
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    state.token = document.getElementById('token').value.trim();
    try {
      await enter();
    } catch (e) {
      document.getElementById('signin-error').textContent = e.status === 401 ? 'That token is not valid.' : e.message;
    }
  });
  // Back from the company IdP with a single-use code: traded for this tab's token.
  const back = location.hash.match(/^#signin=([A-Za-z0-9_-]{1,128})$/);
  if (back) {
    history.replaceState(null, '', location.pathname);
    try {
      // The code opens a session only with the state this tab kept when it started.
      const tabState = sessionStorage.getItem('sluice.signin') || '';
      sessionStorage.removeItem('sluice.signin');
      const r = await fetch('/v1/console/session', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ code: back[1], state: tabState }),
      });
      const data = await r.json();
      if (!r.ok) throw new Error((data.error && data.error.message) || r.statusText);
      state.token = data.token;
    } catch (e) {
      document.getElementById('signin-error').textContent = `Sign-in failed: ${e.message}`;
    }
  }
  if (state.token) {
    try { await enter(); } catch (_) { sessionStorage.removeItem('sluice.token'); state.token = null; }
  }
  try {
    const sso = await (await fetch('/v1/console/sign-in')).json();
    if (sso.enabled) {
      const link = document.getElementById('sso-link');
      link.href = sso.url;
      link.addEventListener('click', (ev) => {
        ev.preventDefault();
        const bytes = crypto.getRandomValues(new Uint8Array(24));
        const tabState = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
        sessionStorage.setItem('sluice.signin', tabState);
        location.href = `${sso.url}&state=${tabState}`;
      });
      document.getElementById('sso-link').textContent = `Sign in with your ${sso.issuer} account`;
      document.getElementById('sso').hidden = false;
    }
  } catch (_) { /* the token form stays */ }
  document.body.dataset.loaded = '1';
}

async function enter() {
  state.me = await api('GET', '/whoami');
  sessionStorage.setItem('sluice.token', state.token);
  document.getElementById('nav').hidden = false;
  document.getElementById('signout').hidden = false;
  document.getElementById('who').textContent = `${state.me.principal} (${state.me.role})`;
  window.addEventListener('hashchange', route);
  await route();
}

start();
