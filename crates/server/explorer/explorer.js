// The idgraph audit explorer: plain JavaScript, no build step. It signs in with a workspace's API
// key and secret (kept in this tab's session storage, sent as HTTP Basic to this server's audit
// endpoints only) and shows what the audit endpoints answer: identity histories, a profile's
// state, timeline and explanations, its neighbourhood as a graph (Cytoscape.js), any of these as
// of a past sequence or time, and what-if.
//
// Untrusted text (identity values, server messages) only ever goes into the page as text
// (`textContent`, DOM nodes), never as HTML.
//
// One file of about 850 lines on purpose: with no build step and no module loader, its sections
// (helpers, status line, API, sign-in, navigation, identity view, profile view, graph, timeline,
// time travel, what-if, start) share one closure instead of globals.
'use strict';

(function () {
  const CREDENTIALS_KEY = 'idgraph-explorer-credentials';
  // Timeline rows per page, and identity values listed per type before "Show all": what keeps a
  // profile with thousands of entries or identities quick to draw.
  const TIMELINE_PAGE_ROWS = 100;
  const TYPE_VALUES_SHOWN = 50;
  // Operations whose stored entries `GET /v1/audit/entries/{seq}/explain` re-decides.
  const EXPLAINABLE = new Set(['identify', 'login', 'logout']);

  const $ = (id) => document.getElementById(id);

  /** An element with properties (`class`, `text`, attributes, `on*` listeners) and children. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'text') node.textContent = value;
      else if (name === 'class') node.className = value;
      else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** A failure to show in words: `status` is the HTTP status (0: the server could not be reached). */
  class ExplorerError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Status line, errors, busy indicator.

  let nBusy = 0;

  function showError(message) {
    const status = $('status');
    status.textContent = message;
    status.hidden = false;
  }

  function clearError() {
    $('status').hidden = true;
    $('status').textContent = '';
  }

  function say(message) {
    $('busy').textContent = message;
  }

  async function busy(message, work) {
    nBusy += 1;
    document.body.dataset.busy = 'true';
    say(message);
    try {
      return await work();
    } finally {
      nBusy -= 1;
      if (nBusy === 0) {
        document.body.dataset.busy = 'false';
        if ($('busy').textContent === message) say('');
      }
    }
  }

  window.addEventListener('error', (event) => {
    showError(`Something went wrong in the page: ${event.message}`);
  });
  window.addEventListener('unhandledrejection', (event) => {
    const reason = event.reason;
    showError(reason instanceof ExplorerError ? reason.message
      : `Something went wrong in the page: ${reason && reason.message ? reason.message : reason}`);
  });

  // ---------------------------------------------------------------------------------------------
  // Credentials and the API.

  function credentials() {
    try {
      const stored = JSON.parse(sessionStorage.getItem(CREDENTIALS_KEY));
      return stored && stored.key ? stored : null;
    } catch (_) {
      return null;
    }
  }

  function basicAuthorization({ key, secret }) {
    let binary = '';
    for (const byte of new TextEncoder().encode(`${key}:${secret}`)) binary += String.fromCharCode(byte);
    return `Basic ${btoa(binary)}`;
  }

  /** Words for a failed call: what happened and, where it helps, what to do. */
  function describe(status, message) {
    const text = message.replace(/\.?$/, '.');
    if (status === 401) return `The API key or secret was not accepted: ${text} Sign in again.`;
    if (status === 429) return `The server asks to slow down: ${text}`;
    if (status >= 500) return `The server failed (HTTP ${status}): ${text}`;
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  /** Calls the API with the stored credentials; throws an ExplorerError in words on failure. */
  async function api(method, path, body) {
    const stored = credentials();
    if (!stored) throw new ExplorerError('Sign in first.', 401);
    const headers = { authorization: basicAuthorization(stored) };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store', credentials: 'omit',
      });
    } catch (err) {
      throw new ExplorerError(
        `Cannot reach the idgraph server at ${location.origin}: is it running? (${err.message})`, 0);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const message = (data && data.Errors && data.Errors[0] && data.Errors[0].message)
        || response.statusText || 'no details';
      if (response.status === 401) signOut(false);
      throw new ExplorerError(describe(response.status, message), response.status);
    }
    if (data === null) throw new ExplorerError(`The server answered ${path} with something that is not JSON.`, response.status);
    return data;
  }

  const segment = encodeURIComponent;

  // ---------------------------------------------------------------------------------------------
  // Signing in and out.

  function showSignIn() {
    $('app').hidden = true;
    $('who').hidden = true;
    $('sign-in').hidden = false;
    $('api-key').focus();
  }

  function showApp() {
    $('sign-in').hidden = true;
    $('app').hidden = false;
    $('who').hidden = false;
    $('who-key').textContent = credentials().key;
  }

  async function signIn(event) {
    event.preventDefault();
    clearError();
    const key = $('api-key').value.trim();
    const secret = $('api-secret').value;
    if (!key || !secret) {
      showError('Enter both the API key and the API secret.');
      return;
    }
    sessionStorage.setItem(CREDENTIALS_KEY, JSON.stringify({ key, secret }));
    try {
      // Any audit answer but 401 proves the secret: MPID 1 usually does not exist (404).
      await busy('Signing in…', () => api('GET', '/v1/audit/profiles/1/history').catch((err) => {
        if (err.status !== 404) throw err;
      }));
    } catch (err) {
      sessionStorage.removeItem(CREDENTIALS_KEY);
      showError(err.message);
      return;
    }
    $('api-secret').value = '';
    showApp();
    $('search').focus();
    await route(parseHash());
  }

  function signOut(byUser) {
    sessionStorage.removeItem(CREDENTIALS_KEY);
    state.mpid = null;
    state.history = null;
    $('identity-view').hidden = true;
    $('profile-view').hidden = true;
    $('what-if-result').replaceChildren();
    if (byUser) {
      clearError();
      history.replaceState(null, '', '#');
    }
    showSignIn();
  }

  // ---------------------------------------------------------------------------------------------
  // Navigation: the views are history entries; the URL names a profile (and a sequence) only.

  function parseHash() {
    const match = /^#profile=(-?\d+)(?:&seq=(\d+))?$/.exec(location.hash);
    if (match) return { kind: 'profile', mpid: match[1], seq: match[2] === undefined ? null : Number(match[2]) };
    return { kind: 'home' };
  }

  function urlOf(target) {
    if (target.kind !== 'profile') return target.kind === 'identity' ? '#identity' : '#';
    return `#profile=${target.mpid}${target.seq === null || target.seq === undefined ? '' : `&seq=${target.seq}`}`;
  }

  function navigate(target, replace) {
    if (replace) history.replaceState(target, '', urlOf(target));
    else history.pushState(target, '', urlOf(target));
    return route(target);
  }

  async function route(target) {
    if (!credentials()) return;
    clearError();
    try {
      if (target.kind === 'profile') {
        let asOf = null;
        if (target.time) asOf = { time: target.time };
        else if (target.seq !== null && target.seq !== undefined) asOf = { seq: target.seq };
        await openProfile(target.mpid, asOf);
      } else if (target.kind === 'identity') {
        await openIdentity(target.type, target.value);
      } else {
        $('identity-view').hidden = true;
        $('profile-view').hidden = true;
      }
    } catch (err) {
      showError(err.message);
    }
  }

  window.addEventListener('popstate', (event) => route(event.state || parseHash()));

  function search(event) {
    event.preventDefault();
    clearError();
    const text = $('search').value.trim();
    if (/^-?\d+$/.test(text)) {
      if (/^-?0+$/.test(text)) {
        showError('0 is not an MPID.');
        return;
      }
      navigate({ kind: 'profile', mpid: text.replace(/^(-?)0+/, '$1'), seq: null });
      return;
    }
    const at = text.indexOf('=');
    if (at <= 0 || at === text.length - 1) {
      showError('Search for an identity as type=value (for example email=a@b.c), or for an MPID (digits).');
      return;
    }
    navigate({ kind: 'identity', type: text.slice(0, at).trim(), value: text.slice(at + 1).trim() });
  }

  // ---------------------------------------------------------------------------------------------
  // Identity view.

  function why(reason) {
    if (!reason) return '';
    const mpid = /(-?\d+)/.exec(reason);
    if (reason.startsWith('Modified')) return 'a modify replaced or removed it';
    if (reason.startsWith('MovedTo')) return `moved to ${mpid ? mpid[1] : 'another profile'} (unique ID)`;
    if (reason.startsWith('AdminDetached')) return 'detached by an administrator';
    if (reason.startsWith('SplitTo')) return `split off into ${mpid ? mpid[1] : 'a new profile'}`;
    return reason;
  }

  function profileButton(mpid, seq) {
    return el('button', {
      type: 'button', class: 'link', text: mpid,
      'aria-label': `Open profile ${mpid}`,
      onclick: () => navigate({ kind: 'profile', mpid, seq: seq === undefined ? null : seq }),
    });
  }

  async function openIdentity(type, value) {
    const data = await busy(`Looking up ${type}=${value}…`,
      () => api('GET', `/v1/audit/identities/${segment(type)}/${segment(value)}/history`));
    const name = `${data.identity.identity_type}=${data.identity.value}`;
    $('profile-view').hidden = true;
    $('identity-view').hidden = false;
    $('identity-title').textContent = `Identity ${name}`;
    const n = data.holders.length;
    const profiles = new Set(data.holders.map((h) => h.mpid)).size;
    $('identity-summary').textContent = n === 0
      ? 'No profile of this workspace ever held it.'
      : `Held ${n} time${n === 1 ? '' : 's'} by ${profiles} profile${profiles === 1 ? '' : 's'}, oldest first. Open a profile to see its timeline.`;
    const rows = data.holders.map((h) => el('tr', {},
      el('td', { 'data-label': 'Profile' }, profileButton(h.mpid)),
      el('td', { 'data-label': 'Held from' }, `#${h.from_seq} · ${shortTime(h.from)}`),
      el('td', { 'data-label': 'Until' }, h.until_seq === null ? 'still holds it' : `#${h.until_seq} · ${shortTime(h.until)}`),
      el('td', { 'data-label': 'Why it ended' }, why(h.reason) || '-')));
    $('holders').tBodies[0].replaceChildren(...rows);
    document.title = `${name} · idgraph audit explorer`;
  }

  // ---------------------------------------------------------------------------------------------
  // Profile view.

  const state = {
    mpid: null,
    history: null, // GET …/history: every entry that touched the profile (now)
    graph: null, // GET …/graph?seq|time: the profile and its neighbourhood then; null: did not exist
    asOf: null, // null (now), {seq} or {time}
    asOfSeq: null, // the sequence shown (null: now)
    page: 0,
    positions: [], // the time slider's stops: sequences (null: now)
    explanations: new Map(), // seq -> explain answer
    cy: null,
    timings: [], // [{mpid, asOf, ms}] time from the request to the drawn page
  };

  const count = (n) => Number(n).toLocaleString('en-US');

  function shortTime(text) {
    if (!text) return '';
    return text.replace('T', ' ').replace(/(\.\d{3})\d*Z$/, '$1Z');
  }

  function asOfQuery(asOf) {
    if (!asOf) return '';
    if (asOf.time) return `?time=${segment(asOf.time)}`;
    return `?seq=${asOf.seq}`;
  }

  async function openProfile(mpid, asOf) {
    const started = performance.now();
    let fetched = started;
    const label = asOf ? ` as of ${asOf.time ? asOf.time : `sequence ${asOf.seq}`}` : '';
    await busy(`Loading profile ${mpid}${label}…`, async () => {
      const cached = state.mpid === mpid && state.history;
      const [history, graph] = await Promise.allSettled([
        cached ? Promise.resolve(state.history) : api('GET', `/v1/audit/profiles/${mpid}/history`),
        api('GET', `/v1/audit/profiles/${mpid}/graph${asOfQuery(asOf)}`),
      ]);
      fetched = performance.now();
      if (history.status === 'rejected') throw history.reason;
      // A profile that did not exist yet at the point asked for is shown empty, with its timeline.
      if (graph.status === 'rejected' && !(asOf && graph.reason.status === 404)) throw graph.reason;
      if (!cached) {
        state.mpid = mpid;
        state.history = history.value;
        state.explanations = new Map();
        state.page = 0;
        state.positions = [history.value.steps[0].seq - 1, ...history.value.steps.map((s) => s.seq), null];
      }
      state.graph = graph.status === 'fulfilled' ? graph.value : null;
      state.asOf = asOf;
      state.asOfSeq = state.graph ? (asOf ? state.graph.as_of_seq : null) : (asOf && asOf.seq !== undefined ? asOf.seq : null);
      state.missing = graph.status === 'rejected' ? graph.reason.message : null;
      $('identity-view').hidden = true;
      $('profile-view').hidden = false;
      renderProfile();
      await new Promise((resolve) => requestAnimationFrame(() => resolve()));
    });
    const ms = Math.round(performance.now() - started);
    const fetchMs = Math.round(fetched - started);
    state.timings.push({ mpid, asOf, ms, fetchMs, drawMs: ms - fetchMs });
    document.body.dataset.renderMs = String(ms);
    say(`Profile ${mpid} shown in ${ms} ms (${fetchMs} ms waiting for the server, ${ms - fetchMs} ms drawing).`);
  }

  function renderProfile() {
    const { mpid, graph, history } = state;
    $('profile-title').textContent = `Profile ${mpid}`;
    document.title = `Profile ${mpid} · idgraph audit explorer`;
    const note = $('as-of-note');
    if (state.missing) {
      note.hidden = false;
      note.textContent = `${state.missing} Its timeline shows what came later.`;
    } else if (state.asOf) {
      note.hidden = false;
      note.textContent = `As of sequence ${graph.as_of_seq}: the profile after that entry. Later entries are in italics in the timeline.`;
    } else {
      note.hidden = true;
    }
    renderSummary(mpid, graph, history);
    renderIdentities(graph);
    renderAliases(graph);
    renderGraph(graph);
    renderTimeline();
    syncTimeControls();
  }

  function renderSummary(mpid, graph, history) {
    const rows = [['MPID', mpid]];
    if (graph) {
      rows.push(['Created', shortTime(graph.profile.created)]);
      rows.push(['Last seen', shortTime(graph.profile.last_seen)]);
      rows.push(['Identities', count(graph.profile.identities.length)]);
    }
    const known = history.became_known_seq;
    const knownValue = known === null ? 'never (anonymous)' : el('button', {
      type: 'button', class: 'link', text: `#${known}`,
      'aria-label': `Show entry ${known}, where the profile became known, and its explanation`,
      onclick: () => showEntry(known, true),
    });
    rows.push(['Became known', knownValue]);
    rows.push(['Timeline', `${count(history.steps.length)} entries, #${history.steps[0].seq} to #${history.steps[history.steps.length - 1].seq}`]);
    rows.push(['Shown as of', state.asOfSeq === null ? 'now' : `sequence ${state.asOfSeq}`]);
    $('summary').replaceChildren(...rows.flatMap(([term, value]) => [el('dt', { text: term }), el('dd', {}, value)]));
  }

  function renderIdentities(graph) {
    const box = $('identities');
    if (!graph) {
      box.replaceChildren(el('p', { class: 'note', text: 'None: the profile did not exist then.' }));
      $('identities-title').textContent = 'Identities';
      return;
    }
    // Types in the order the neighbourhood ranks identities (shared first, then the workspace's
    // priority), then the rest.
    const byType = new Map(graph.identities.map((n) => [n.identity_type, []]));
    for (const identity of graph.profile.identities) {
      if (!byType.has(identity.identity_type)) byType.set(identity.identity_type, []);
      byType.get(identity.identity_type).push(identity.value);
    }
    $('identities-title').textContent = `Identities (${count(graph.profile.identities.length)})`;
    if (byType.size === 0) {
      box.replaceChildren(el('p', { class: 'note', text: 'None (an orphaned profile).' }));
      return;
    }
    const groups = [...byType].filter(([, values]) => values.length > 0).map(([type, values]) => {
      const list = el('ul', {});
      const item = (value) => el('li', {}, el('button', {
        type: 'button', class: 'link', text: value, 'aria-label': `Open identity ${type}=${value}`,
        onclick: () => navigate({ kind: 'identity', type, value }),
      }));
      list.append(...values.slice(0, TYPE_VALUES_SHOWN).map(item));
      if (values.length > TYPE_VALUES_SHOWN) {
        const more = el('li', {}, el('button', {
          type: 'button', class: 'quiet', text: `Show all ${count(values.length)}`,
          onclick: () => {
            more.remove();
            list.append(...values.slice(TYPE_VALUES_SHOWN).map(item));
          },
        }));
        list.append(more);
      }
      return el('details', { open: values.length <= TYPE_VALUES_SHOWN },
        el('summary', { text: `${type} (${count(values.length)})` }), list);
    });
    box.replaceChildren(el('div', { class: 'types' }, groups));
  }

  function renderAliases(graph) {
    const items = (graph ? graph.aliases : []).map((a) => {
      const outgoing = a.source === state.mpid;
      const partner = outgoing ? a.destination : a.source;
      return el('li', {}, outgoing ? 'Aliased to ' : 'Alias from ', profileButton(partner),
        ` at #${a.seq} (window ${shortTime(a.start)} to ${shortTime(a.end)})`);
    });
    $('aliases').replaceChildren(...(items.length ? items : [el('li', { class: 'note', text: 'None.' })]));
  }

  // ---------------------------------------------------------------------------------------------
  // The graph picture.

  const GRAPH_STYLE = [
    { selector: 'node', style: {
      label: 'data(label)', 'text-wrap': 'wrap', 'text-max-width': '160px', 'font-size': 12,
      color: '#1a1a1a', 'text-valign': 'bottom', 'text-margin-y': 4, 'text-background-color': '#ffffff',
      'text-background-opacity': 0.9, 'text-background-padding': '2px', width: 22, height: 22,
      'min-zoomed-font-size': 6, 'background-color': '#6b7280',
    } },
    { selector: 'node.focus', style: { 'background-color': '#1d4ed8', width: 36, height: 36, 'font-weight': 'bold' } },
    { selector: 'node.identity', style: { 'background-color': '#047857', shape: 'round-rectangle' } },
    { selector: 'node.other', style: { 'background-color': '#9a3412' } },
    { selector: 'node.more', style: { 'background-color': '#6b7280', shape: 'round-tag' } },
    { selector: 'edge', style: {
      width: 1.5, 'line-color': '#6b7280', 'curve-style': 'bezier', label: 'data(label)', 'font-size': 9,
      color: '#374151', 'text-rotation': 'autorotate', 'text-background-color': '#ffffff',
      'text-background-opacity': 0.9, 'min-zoomed-font-size': 7,
    } },
    { selector: 'edge.past', style: { 'line-style': 'dashed', 'line-color': '#9ca3af' } },
    { selector: 'edge.more', style: { 'line-style': 'dotted' } },
    { selector: 'edge.alias', style: {
      'line-color': '#6d28d9', 'line-style': 'dashed', width: 2.5, 'target-arrow-shape': 'triangle',
      'target-arrow-color': '#6d28d9',
    } },
  ];

  function graphElements(graph) {
    const focus = `p:${state.mpid}`;
    const nodes = new Map();
    const edges = [];
    const node = (id, data, classes) => {
      if (!nodes.has(id)) nodes.set(id, { group: 'nodes', data: { id, ...data }, classes });
    };
    node(focus, { label: `${state.mpid}\nthis profile`, kind: 'profile', mpid: state.mpid }, 'focus');
    const others = new Map(); // mpid -> descriptions, for the list under the picture
    const short = (value) => (value.length > 28 ? `${value.slice(0, 27)}…` : value);
    // `order`: where a node goes in its row (identities as ranked, other profiles under the first
    // identity they share), so that the rows' edges do not cross more than they must.
    graph.identities.forEach((n, order) => {
      const id = `i:${n.identity_type}=${n.value}`;
      node(id, { label: `${n.identity_type}\n${short(n.value)}`, kind: 'identity', type: n.identity_type, value: n.value, order }, 'identity');
      edges.push({ group: 'edges', data: { id: `${focus}>${id}`, source: focus, target: id, label: n.held_since_seq === null ? '' : `#${n.held_since_seq}` }, classes: 'holds' });
      for (const h of n.others) {
        const pid = `p:${h.mpid}`;
        node(pid, { label: h.mpid, kind: 'profile', mpid: h.mpid, order }, 'other');
        const when = h.until_seq === null ? `since #${h.from_seq}` : `#${h.from_seq} to #${h.until_seq}`;
        edges.push({ group: 'edges', data: { id: `${pid}>${id}@${h.from_seq}`, source: pid, target: id, label: when }, classes: h.until_seq === null ? 'holds' : 'past' });
        if (!others.has(h.mpid)) others.set(h.mpid, []);
        others.get(h.mpid).push(`${h.until_seq === null ? 'holds' : 'held'} ${n.identity_type}=${n.value} (${when})`);
      }
    });
    const last = graph.identities.length;
    if (graph.n_identities_omitted > 0) {
      node('more', { label: `${graph.n_identities_omitted} more identities\n(listed under Identities)`, kind: 'more', order: last }, 'more');
      edges.push({ group: 'edges', data: { id: `${focus}>more`, source: focus, target: 'more', label: '' }, classes: 'more' });
    }
    for (const a of graph.aliases) {
      for (const mpid of [a.source, a.destination]) {
        node(`p:${mpid}`, { label: mpid, kind: 'profile', mpid, order: last }, 'other');
        if (mpid !== state.mpid) {
          if (!others.has(mpid)) others.set(mpid, []);
          others.get(mpid).push(a.source === mpid ? `aliased to this profile at #${a.seq}` : `alias from this profile at #${a.seq}`);
        }
      }
      edges.push({ group: 'edges', data: { id: `alias@${a.seq}`, source: `p:${a.source}`, target: `p:${a.destination}`, label: `alias #${a.seq}` }, classes: 'alias' });
    }
    return { elements: [...nodes.values(), ...edges], others };
  }

  function renderGraph(graph) {
    const box = $('graph');
    const list = $('neighbours');
    if (!window.cytoscape) {
      $('graph-note').textContent = 'The graph library (vendor/cytoscape.min.js) did not load: the picture cannot be drawn. The lists on this page have the same information.';
      list.replaceChildren();
      return;
    }
    if (!state.cy) {
      state.cy = window.cytoscape({
        container: box, style: GRAPH_STYLE, wheelSensitivity: 0.3, minZoom: 0.05, maxZoom: 3,
        boxSelectionEnabled: false, autoungrabify: false,
      });
      state.cy.on('tap', 'node', (event) => {
        const data = event.target.data();
        if (data.kind === 'profile' && data.mpid !== state.mpid) navigate({ kind: 'profile', mpid: data.mpid, seq: null });
        if (data.kind === 'identity') navigate({ kind: 'identity', type: data.type, value: data.value });
      });
      state.cy.on('mouseover', 'node', () => { box.style.cursor = 'pointer'; });
      state.cy.on('mouseout', 'node', () => { box.style.cursor = ''; });
    }
    const cy = state.cy;
    const focus = `p:${state.mpid}`;
    cy.resize();
    if (!graph) {
      cy.elements().remove();
      $('graph-note').textContent = 'Nothing to draw: the profile did not exist then.';
      box.setAttribute('aria-label', 'Empty graph: the profile did not exist then');
      list.replaceChildren();
      return;
    }
    const { elements, others } = graphElements(graph);
    cy.batch(() => {
      cy.elements().remove();
      cy.add(elements);
    });
    const level = { focus: 3, identity: 2, more: 2, other: 1 };
    // A small neighbourhood is laid out in rows, labels included (readable): this profile, its
    // identities and alias partners, the other profiles; a big one in rings, which stays legible
    // longer and costs next to nothing.
    // Alias edges are left out of the rows, so that a partner that shares an identity sits with
    // the other profiles.
    const small = cy.nodes().length <= 24;
    (small ? cy.elements().not('edge.alias') : cy.elements()).layout(small ? {
      name: 'breadthfirst', roots: cy.getElementById(focus), directed: false, animate: false,
      fit: true, padding: 24, spacingFactor: 1.1, avoidOverlap: true, nodeDimensionsIncludeLabels: true,
      depthSort: (a, b) => (a.data('order') || 0) - (b.data('order') || 0),
    } : {
      name: 'concentric', animate: false, fit: true, padding: 24, minNodeSpacing: 24,
      avoidOverlap: true, levelWidth: () => 1,
      concentric: (n) => level[n.classes().find((c) => c in level)] || 1,
    }).run();
    // A small neighbourhood fitted to the box would be drawn huge.
    if (cy.zoom() > 1.2) {
      cy.zoom(1.2);
      cy.center();
    }
    const nIdentities = graph.identities.length;
    const omitted = graph.n_identities_omitted;
    const parts = [`${nIdentities} identit${nIdentities === 1 ? 'y' : 'ies'}`, `${others.size} other profile${others.size === 1 ? '' : 's'}`, `${graph.aliases.length} alias${graph.aliases.length === 1 ? '' : 'es'}`];
    box.setAttribute('aria-label', `Graph of profile ${state.mpid}: ${parts.join(', ')}. The same is listed in words on this page.`);
    const limited = graph.identities.filter((n) => n.n_others_omitted > 0).length;
    $('graph-note').textContent = [
      `Drawn: ${parts.join(', ')}.`,
      omitted ? `${omitted} identities not drawn (at most ${graph.limits.identities_max}; the ones shared or changed most first).` : '',
      limited ? `${limited} identities had more than ${graph.limits.holders_per_identity_max} other holders: the newest are drawn.` : '',
    ].filter(Boolean).join(' ');
    list.replaceChildren(...(others.size ? [...others].map(([mpid, what]) => el('li', {}, profileButton(mpid), `: ${what.join('; ')}`))
      : [el('li', { class: 'note', text: 'None: no other profile held these identities, and there are no aliases.' })]));
  }

  // ---------------------------------------------------------------------------------------------
  // The timeline and explanations.

  function renderTimeline() {
    const steps = state.history.steps;
    const nPages = Math.max(1, Math.ceil(steps.length / TIMELINE_PAGE_ROWS));
    state.page = Math.min(Math.max(state.page, 0), nPages - 1);
    const from = state.page * TIMELINE_PAGE_ROWS;
    const to = Math.min(steps.length, from + TIMELINE_PAGE_ROWS);
    const known = state.history.became_known_seq;
    $('timeline-summary').textContent = known === null
      ? `${count(steps.length)} entries touched this profile, oldest first. It never became known (no login ID arrived).`
      : `${count(steps.length)} entries touched this profile, oldest first. It became known at #${known} (highlighted).`;
    $('page-label').textContent = `Entries ${count(from + 1)} to ${count(to)} of ${count(steps.length)} (page ${count(state.page + 1)} of ${count(nPages)})`;
    $('page-prev').disabled = state.page === 0;
    $('page-next').disabled = state.page >= nPages - 1;
    const body = $('timeline').tBodies[0];
    const fragment = document.createDocumentFragment();
    for (const step of steps.slice(from, to)) {
      fragment.append(timelineRow(step, known));
      if (state.explanations.has(step.seq) && state.explanations.get(step.seq).open) {
        fragment.append(explanationRow(step.seq));
      }
    }
    body.replaceChildren(fragment);
  }

  function timelineRow(step, known) {
    const later = state.asOfSeq !== null && step.seq > state.asOfSeq;
    const classes = [later ? 'later' : '', step.seq === known ? 'known' : ''].filter(Boolean).join(' ');
    const answer = step.resolved_mpid === null ? 'none'
      : step.resolved_mpid === state.mpid ? 'this profile' : profileButton(step.resolved_mpid);
    const explained = state.explanations.get(step.seq);
    const explain = EXPLAINABLE.has(step.operation) ? el('button', {
      type: 'button', class: 'quiet', text: `Explain #${step.seq}`,
      'aria-expanded': explained && explained.open ? 'true' : 'false',
      'data-seq': step.seq,
      onclick: () => toggleExplanation(step.seq),
    }) : el('span', { class: 'note', text: 'not a lookup' });
    return el('tr', { class: classes || undefined, id: `entry-${step.seq}` },
      el('td', { class: 'seq', 'data-label': 'Seq' }, `#${step.seq}`, step.seq === known ? el('span', { class: 'badge', text: ' became known' }) : null,
        later ? el('span', { class: 'note', text: ' (later)' }) : null),
      el('td', { 'data-label': 'Time' }, shortTime(step.recorded_at)),
      el('td', { 'data-label': 'Operation' }, step.operation),
      el('td', { 'data-label': 'Identities sent' }, step.identities.length
        ? el('ul', {}, step.identities.map((i) => el('li', { text: `${i.identity_type}=${i.value}` }))) : 'none'),
      el('td', { 'data-label': 'Changes' }, step.changes.length ? el('ul', {}, step.changes.map((c) => el('li', { text: c }))) : 'seen'),
      el('td', { 'data-label': 'Answer' }, answer),
      el('td', { 'data-label': 'Explanation' }, explain));
  }

  function explanationRow(seq) {
    const explained = state.explanations.get(seq);
    const content = explained.error
      ? el('p', { class: 'note', text: explained.error })
      : [el('p', { text: explained.data.agrees
        ? 'Re-decided against the state just before it, with the workspace configuration: agrees with what was recorded.'
        : 'Re-decided against the state just before it: differs from what was recorded (the configuration changed since).' }),
      el('pre', { text: explained.data.explanation })];
    return el('tr', { class: 'explanation', id: `explanation-${seq}` },
      el('td', { colspan: 7 }, el('h4', { text: `Explanation of #${seq}` }), content));
  }

  async function toggleExplanation(seq) {
    let explained = state.explanations.get(seq);
    if (explained && explained.open) {
      explained.open = false;
      renderTimeline();
      return;
    }
    if (!explained || explained.error) {
      try {
        const data = await busy(`Explaining #${seq}…`, () => api('GET', `/v1/audit/entries/${seq}/explain`));
        explained = { data };
      } catch (err) {
        if (err.status === 401 || err.status === 0) {
          showError(err.message);
          return;
        }
        explained = { error: err.message };
      }
      state.explanations.set(seq, explained);
    }
    explained.open = true;
    renderTimeline();
    const button = document.querySelector(`#entry-${seq} button[data-seq]`);
    if (button) button.focus();
  }

  /** Turns to the timeline page holding entry `seq` and, with `explain`, opens its explanation. */
  async function showEntry(seq, explain) {
    const idx = state.history.steps.findIndex((s) => s.seq === seq);
    if (idx < 0) return;
    state.page = Math.floor(idx / TIMELINE_PAGE_ROWS);
    renderTimeline();
    const explained = state.explanations.get(seq);
    if (explain && !(explained && explained.open)) await toggleExplanation(seq);
    const row = $(`entry-${seq}`);
    if (row) row.scrollIntoView({ block: 'center' });
  }

  // ---------------------------------------------------------------------------------------------
  // Time travel.

  function positionOf(seq) {
    const stops = state.positions;
    if (seq === null) return stops.length - 1;
    let idx = 0;
    for (let i = 0; i < stops.length - 1; i += 1) {
      if (stops[i] <= seq) idx = i;
    }
    return idx;
  }

  function describePosition(idx) {
    const seq = state.positions[idx];
    if (seq === null) return 'now';
    const steps = state.history.steps;
    if (idx === 0) return `sequence ${seq}: before #${steps[0].seq}, which created or first touched it`;
    const step = steps[idx - 1];
    return `sequence ${seq}: after #${step.seq} (${step.operation}, ${shortTime(step.recorded_at)})`;
  }

  function syncTimeControls() {
    const slider = $('as-of-entry');
    slider.max = String(state.positions.length - 1);
    const idx = positionOf(state.asOfSeq);
    slider.value = String(idx);
    const text = state.asOf && state.asOf.time && state.graph
      ? `${describePosition(idx)}; asked for ${state.asOf.time}` : describePosition(idx);
    $('as-of-label').textContent = text;
    slider.setAttribute('aria-valuetext', text);
    $('as-of-seq').value = state.asOfSeq === null ? '' : String(state.asOfSeq);
    if (!state.asOf || !state.asOf.time) $('as-of-time').value = '';
  }

  let sliderTimer = null;

  function sliderMoved(commit) {
    const idx = Number($('as-of-entry').value);
    const seq = state.positions[idx];
    const text = describePosition(idx);
    $('as-of-label').textContent = text;
    $('as-of-entry').setAttribute('aria-valuetext', text);
    $('as-of-seq').value = seq === null ? '' : String(seq);
    $('as-of-time').value = '';
    clearTimeout(sliderTimer);
    if (commit) {
      sliderTimer = setTimeout(() => navigate({ kind: 'profile', mpid: state.mpid, seq }, true), 150);
    }
  }

  function timeSubmitted(event) {
    event.preventDefault();
    clearError();
    const time = $('as-of-time').value;
    const seqText = $('as-of-seq').value.trim();
    if (time) {
      const date = new Date(time);
      if (Number.isNaN(date.getTime())) {
        showError(`"${time}" is not a time.`);
        return;
      }
      navigate({ kind: 'profile', mpid: state.mpid, seq: null, time: date.toISOString() }, true);
    } else if (seqText) {
      if (!/^\d+$/.test(seqText)) {
        showError('A sequence is a whole number (0 or more).');
        return;
      }
      navigate({ kind: 'profile', mpid: state.mpid, seq: Number(seqText) }, true);
    } else {
      navigate({ kind: 'profile', mpid: state.mpid, seq: null }, true);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // What-if.

  function typeList(text) {
    const types = text.split(/[\s,>]+/).map((t) => t.trim()).filter(Boolean);
    return types.length ? types : undefined;
  }

  async function whatIf(event) {
    event.preventDefault();
    clearError();
    const body = {};
    const strategy = $('what-if-strategy').value;
    if (strategy) body.strategy = strategy;
    const priority = typeList($('what-if-priority').value);
    if (priority) body.identity_priority = priority;
    const login = typeList($('what-if-login').value);
    if (login) body.login_ids = login;
    const box = $('what-if-result');
    let report;
    try {
      report = await busy('Re-deciding every request of the workspace…', () => api('POST', '/v1/audit/what-if', body));
    } catch (err) {
      box.replaceChildren(el('p', { class: 'note', text: `What-if failed: ${err.message}` }));
      showError(err.message);
      return;
    }
    const changes = [strategy ? `strategy ${strategy}` : '', priority ? `priority ${priority.join(' > ')}` : '',
      login ? `login IDs ${login.join(', ')}` : ''].filter(Boolean).join(', ') || 'the current configuration';
    const examples = report.examples.map((e) => el('details', {},
      el('summary', { text: `#${e.seq} ${e.operation}: recorded ${e.recorded_mpid}, would be ${e.alternative_mpid === null ? 'rejected' : e.alternative_mpid}` }),
      el('pre', { text: e.explanation }),
      el('p', {}, 'Open the recorded profile as of then: ', profileButton(e.recorded_mpid, e.seq))));
    box.replaceChildren(
      el('h3', { text: `Under ${changes}` }),
      el('p', { class: 'counts' }, el('strong', { text: report.n_different_mpid }),
        ` of ${report.n_requests} requests would get another MPID; ${report.n_rejected} would be rejected.`),
      el('p', { text: `Profiles: ${report.n_profiles_recorded} recorded, ${report.n_profiles_alternative} under the alternative. Re-decided in ${report.seconds.toFixed(3)} s.` }),
      examples.length ? el('h4', { text: `The first differing requests (${examples.length})` }) : el('p', { class: 'note', text: 'No request would resolve differently.' }),
      ...examples);
  }

  // ---------------------------------------------------------------------------------------------
  // Start.

  function start() {
    $('sign-in-form').addEventListener('submit', signIn);
    $('sign-out').addEventListener('click', () => signOut(true));
    $('search-form').addEventListener('submit', search);
    $('time-form').addEventListener('submit', timeSubmitted);
    $('as-of-entry').addEventListener('input', () => sliderMoved(false));
    $('as-of-entry').addEventListener('change', () => sliderMoved(true));
    $('as-of-seq').addEventListener('input', () => { $('as-of-time').value = ''; });
    $('as-of-time').addEventListener('input', () => { $('as-of-seq').value = ''; });
    $('as-of-now').addEventListener('click', () => navigate({ kind: 'profile', mpid: state.mpid, seq: null }, true));
    $('page-prev').addEventListener('click', () => { state.page -= 1; renderTimeline(); });
    $('page-next').addEventListener('click', () => { state.page += 1; renderTimeline(); });
    $('what-if-form').addEventListener('submit', whatIf);
    // For tests and the curious: what the graph shows, and how long pages took to draw.
    window.explorer = Object.freeze({
      graphNodes: () => (state.cy ? state.cy.nodes().map((n) => ({ ...n.data() })) : []),
      timings: () => state.timings.slice(),
    });
    if (credentials()) {
      showApp();
      route(parseHash());
    } else {
      showSignIn();
    }
  }

  start();
}());
