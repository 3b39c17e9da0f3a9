// canhazgpu's dashboard: renders /api/hosts and /api/report, live through /api/events.
//
// Every user name, note and host name is untrusted text. The DOM is built with
// createElement and text nodes only (the el() helper below); nothing here parses markup,
// so data can never become elements or scripts. The server's Content-Security-Policy
// (default-src 'self') forbids inline scripts and styles as a second line.
'use strict';

(() => {
  const REPORT_PERIODS = [1, 7, 30, 90];
  // While the event stream is down, the page asks this often instead.
  const POLL_MS = 2000;
  // The server pings every 10 s; a stream silent for longer than this is dead.
  const STREAM_SILENCE_MS = 25000;
  // Data older than this (no successful answer since) is marked stale.
  const STALE_MS = 10000;
  const REPORT_MIN_GAP_MS = 10000;
  const REPORT_REFRESH_MS = 60000;
  const CHANGE_JITTER_MS = 250;

  const page = {
    fetchedAt: 0,
    fetchError: null,
    streamOpen: false,
    lastEventAt: 0,
    stream: null,
    pollTimer: null,
    reportAt: 0,
    // Host name -> {view, skewMs, at}: the last good view of each host, shown greyed
    // while the host is unreachable.
    lastGood: new Map(),
    // Elements showing a time relative to now: {node, at, skewMs, render}.
    clocks: [],
  };

  // ---- DOM helpers: text only ----

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'class') node.className = value;
      else if (name === 'data') Object.assign(node.dataset, value);
      else node.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // ---- times ----

  // 42s, 5m 3s, 2h 5m, 3d 4h: two units, like a person would say it.
  function span(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  // The host's clock now, by our clock and the skew seen at the last answer.
  function hostNow(skewMs) {
    return (Date.now() + skewMs) / 1000;
  }

  // A <time> whose text is render(seconds) and is redrawn every second.
  function clock(at, skewMs, render) {
    const node = el('time', { datetime: new Date(at * 1000).toISOString() });
    const entry = { node, at, skewMs, render };
    page.clocks.push(entry);
    draw(entry);
    return node;
  }

  function draw(entry) {
    entry.node.textContent = entry.render(hostNow(entry.skewMs) - entry.at);
  }

  const ago = (at, skewMs) => clock(at, skewMs, (d) => `${span(d)} ago`);
  const since = (at, skewMs) => clock(at, skewMs, (d) => span(d));
  const until = (at, skewMs) =>
    clock(at, skewMs, (d) => (d <= 0 ? `in ${span(-d)}` : `${span(d)} ago`));

  // ---- hosts ----

  const STATE_LABEL = {
    available: 'Available',
    in_use: 'Reserved',
    in_use_without_reservation: 'In use without reservation',
  };

  function gib(mib) {
    if (mib === 0) return '0 GiB';
    return `${(mib / 1024).toFixed(mib >= 10240 ? 0 : 1)} GiB`;
  }

  // Processes of other users on a reserved GPU: what crashes the holder's jobs.
  function foreignProcesses(gpu) {
    if (gpu.state !== 'in_use' || !gpu.nvml) return [];
    const holders = new Set([gpu.user, gpu.actual_user].filter(Boolean));
    return gpu.nvml.processes.filter((p) => p.user && !holders.has(p.user));
  }

  function describeProcess(p) {
    return `${p.user || '?'} (pid ${p.pid}, ${gib(p.used_mib)})`;
  }

  function gpuTile(gpu, skewMs) {
    const foreign = foreignProcesses(gpu);
    const kind = gpu.kind ? ` kind-${gpu.kind}` : '';
    const badge = gpu.state === 'in_use' && gpu.kind
      ? `${STATE_LABEL.in_use} · ${gpu.kind}` : STATE_LABEL[gpu.state] || gpu.state;
    const tile = el('article', {
      class: `gpu state-${gpu.state}${kind}${foreign.length ? ' foreign' : ''}`,
      data: { gpu: gpu.id, state: gpu.state },
    },
    el('div', { class: 'gpu-head' },
      el('span', { class: 'gpu-id' }, `GPU ${gpu.id}`),
      el('span', { class: 'badge' }, badge)));
    if (gpu.state === 'in_use') {
      tile.append(holder(gpu), reservationTimes(gpu, skewMs));
      if (gpu.note) tile.append(el('p', { class: 'note' }, gpu.note));
    } else if (gpu.state === 'in_use_without_reservation') {
      const procs = gpu.nvml ? gpu.nvml.processes : [];
      tile.append(el('div', { class: 'who' }, procs.length
        ? `by ${procs.map(describeProcess).join(', ')}`
        : 'NVML lists no processes'));
    } else {
      tile.append(el('div', { class: 'times' }, gpu.last_released
        ? ['released ', ago(gpu.last_released, skewMs)]
        : 'never reserved'));
    }
    if (gpu.nvml) tile.append(nvmlBlock(gpu.nvml, gpu.mig));
    if (foreign.length) {
      tile.append(el('p', { class: 'warning' },
        `Also used by ${foreign.map(describeProcess).join(', ')}`));
    }
    return tile;
  }

  function holder(gpu) {
    const who = el('div', { class: 'who' }, el('span', { class: 'user' }, gpu.user));
    if (gpu.actual_user && gpu.actual_user !== gpu.user) {
      who.append(' ', el('span', { class: 'account' }, `account ${gpu.actual_user}`));
    }
    return who;
  }

  function reservationTimes(gpu, skewMs) {
    const parts = [];
    if (gpu.since) parts.push(el('span', null, 'for ', since(gpu.since, skewMs)));
    if (gpu.last_heartbeat) {
      parts.push(el('span', null, 'heartbeat ', ago(gpu.last_heartbeat, skewMs)));
    }
    if (gpu.expires) parts.push(el('span', null, 'expires ', until(gpu.expires, skewMs)));
    return el('div', { class: 'times' }, parts);
  }

  // What the GPU library (NVML, or AMD SMI: the key is older than AMD support) says.
  function nvmlBlock(nvml, mig) {
    const total = Math.max(nvml.memory_total_mib, 1);
    const share = Math.min(100, (100 * nvml.memory_used_mib) / total);
    const fill = el('div', { class: 'fill' });
    // CSSOM, not a style attribute: the policy allows the one and forbids the other.
    fill.style.width = `${share.toFixed(1)}%`;
    const bar = el('div', {
      class: `bar${share > 90 ? ' full' : ''}`,
      role: 'meter',
      'aria-valuemin': 0,
      'aria-valuemax': nvml.memory_total_mib,
      'aria-valuenow': nvml.memory_used_mib,
      'aria-label': 'memory in use',
    }, fill);
    const where = mig
      ? ` · MIG ${mig.profile ? `${mig.profile} ` : ''}on GPU ${mig.gpu} (device ${mig.index})`
      : '';
    return el('div', { class: 'nvml' },
      el('div', { class: 'model', title: `${nvml.name}${where}` }, `${nvml.name}${where}`),
      el('div', { class: 'memory' }, bar,
        el('span', { class: 'amount' },
          `${gib(nvml.memory_used_mib)} / ${gib(nvml.memory_total_mib)}`)),
      nvml.note ? el('div', { class: 'library-note' }, nvml.note) : null);
  }

  function summaryPills(summary) {
    const pill = (cls, count, label) => el('span', { class: `pill ${cls}` },
      el('b', null, String(count)), ` ${label}`);
    const pills = [
      pill('free', summary.available, 'free'),
      pill('reserved', summary.in_use, 'reserved'),
    ];
    if (summary.in_use_without_reservation) {
      pills.push(pill('unreserved', summary.in_use_without_reservation,
        'in use without reservation'));
    }
    pills.push(pill('waiting', summary.waiting, 'waiting'));
    return el('div', { class: 'summary' }, pills);
  }

  function queueBlock(queue, skewMs) {
    if (!queue.length) return el('p', { class: 'queue-empty muted' }, 'Nobody is waiting.');
    const rows = queue.map((w) => el('tr', { data: { position: w.position } },
      el('td', { class: 'num' }, String(w.position)),
      el('td', null, el('span', { class: 'user' }, w.user),
        w.actual_user && w.actual_user !== w.user
          ? el('span', { class: 'account' }, ` account ${w.actual_user}`) : null),
      el('td', null, w.gpu_ids ? `GPU ${w.gpu_ids.join(', ')}` : `${w.gpus} GPU${w.gpus === 1 ? '' : 's'}`),
      el('td', null, w.kind),
      el('td', null, since(w.since, skewMs)),
      el('td', null, w.deadline ? until(w.deadline, skewMs) : '—')));
    return el('div', { class: 'queue' },
      el('h3', null, 'Waiting'),
      el('div', { class: 'scroll' }, el('table', null,
        el('thead', null, el('tr', null, ['#', 'User', 'Wants', 'Kind', 'Waiting', 'Gives up']
          .map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', null, rows))));
  }

  function hostSection(host) {
    const now = Date.now();
    let view = host;
    let staleNote = null;
    if (host.reachable) {
      const skewMs = host.now !== null ? host.now * 1000 - now : 0;
      page.lastGood.set(host.host, { view: host, skewMs, at: now });
    } else {
      const good = page.lastGood.get(host.host);
      if (good) {
        view = good.view;
        staleNote = el('span', null, 'showing what it held ', ago(good.at / 1000, 0));
      }
    }
    const good = page.lastGood.get(host.host);
    const skewMs = good ? good.skewMs : 0;
    const head = el('header', { class: 'host-head' },
      el('h2', null, host.host),
      view.summary ? summaryPills(view.summary) : null,
      el('div', { class: 'host-meta muted' }, host.store));
    const section = el('section', {
      class: `host${host.reachable ? '' : ' unreachable'}`,
      data: { host: host.host },
    }, head);
    if (!host.reachable) {
      section.append(el('p', { class: 'host-error' },
        el('b', null, 'Unreachable: '), host.error || 'no answer', staleNote ? ' — ' : '',
        staleNote));
    }
    if (view.reachable) {
      section.append(el('div', { class: 'tiles' }, view.gpus.map((g) => gpuTile(g, skewMs))));
      section.append(queueBlock(view.queue, skewMs));
    }
    return section;
  }

  function renderHosts(hosts) {
    page.clocks = [];
    const container = document.getElementById('hosts');
    container.replaceChildren(...(hosts.length
      ? hosts.map(hostSection)
      : [el('p', { class: 'muted' }, 'No hosts.')]));
  }

  // ---- report ----

  function periodTitle(days) {
    return days === 1 ? 'Last 24 hours' : `Last ${days} days`;
  }

  function reportPanel(days, report, error) {
    const panel = el('div', { class: 'period', data: { days } }, el('h3', null, periodTitle(days)));
    if (error) {
      panel.append(el('p', { class: 'muted' }, error));
      return panel;
    }
    const users = report.users.filter((u) => u.gpu_hours > 0 || u.in_progress > 0);
    if (!users.length) {
      panel.append(el('p', { class: 'muted' }, 'No use.'));
      return panel;
    }
    const most = Math.max(...users.map((u) => u.gpu_hours), 1e-9);
    const list = el('ol', { class: 'bars' });
    for (const u of users) {
      const fill = el('div', { class: 'fill' });
      fill.style.width = `${Math.max(1, (100 * u.gpu_hours) / most).toFixed(1)}%`;
      list.append(el('li', { data: { user: u.user } },
        el('span', { class: 'user' }, u.user),
        el('div', { class: 'bar' }, fill),
        el('span', { class: 'hours' }, hours(u.gpu_hours),
          u.in_progress ? el('span', { class: 'running', title: 'GPUs held now' },
            ` +${u.in_progress} now`) : null)));
    }
    panel.append(list, el('p', { class: 'total muted' },
      `Total ${hours(report.total.gpu_hours)} GPU-hours`));
    return panel;
  }

  function hours(h) {
    return `${h >= 100 ? h.toFixed(0) : h.toFixed(1)} h`;
  }

  async function loadReport() {
    page.reportAt = Date.now();
    const panels = await Promise.all(REPORT_PERIODS.map(async (days) => {
      try {
        const res = await fetch(`/api/report?days=${days}`, { cache: 'no-store' });
        const body = await res.json();
        if (!res.ok) return reportPanel(days, null, body.error || `HTTP ${res.status}`);
        return reportPanel(days, body, null);
      } catch (e) {
        return reportPanel(days, null, 'Could not load the report.');
      }
    }));
    document.getElementById('report-periods').replaceChildren(...panels);
  }

  function reportSoon() {
    if (Date.now() - page.reportAt >= REPORT_MIN_GAP_MS) loadReport();
  }

  // ---- fetching and liveness ----

  let loading = false;
  let loadAgain = false;

  async function refresh() {
    if (loading) {
      loadAgain = true;
      return;
    }
    loading = true;
    try {
      do {
        loadAgain = false;
        await loadHosts();
      } while (loadAgain);
    } finally {
      loading = false;
    }
  }

  async function loadHosts() {
    try {
      const res = await fetch('/api/hosts', { cache: 'no-store' });
      if (!res.ok) throw new Error(`the server answered ${res.status}`);
      const hosts = await res.json();
      page.fetchedAt = Date.now();
      page.fetchError = null;
      renderHosts(hosts);
    } catch (e) {
      page.fetchError = e instanceof TypeError ? 'the server cannot be reached' : e.message;
    }
    renderConnection();
  }

  function startPolling() {
    if (page.pollTimer === null) page.pollTimer = setInterval(refresh, POLL_MS);
  }

  function stopPolling() {
    if (page.pollTimer !== null) clearInterval(page.pollTimer);
    page.pollTimer = null;
  }

  function openStream() {
    if (!window.EventSource) {
      startPolling();
      return;
    }
    const stream = new EventSource('/api/events');
    page.stream = stream;
    const heard = () => { page.lastEventAt = Date.now(); };
    stream.addEventListener('open', () => {
      page.streamOpen = true;
      heard();
      stopPolling();
      // Whatever changed while the stream was down.
      refresh();
      renderConnection();
    });
    stream.addEventListener('change', () => {
      heard();
      // Every open page hears the same event: spread their requests a little.
      setTimeout(() => {
        refresh();
        reportSoon();
      }, Math.random() * CHANGE_JITTER_MS);
    });
    stream.addEventListener('ping', heard);
    stream.addEventListener('error', () => {
      page.streamOpen = false;
      startPolling();
      renderConnection();
      if (stream.readyState === EventSource.CLOSED) {
        // Refused (too many streams, say): poll, and try again later.
        page.stream = null;
        setTimeout(openStream, 30000);
      }
    });
  }

  function watchdog() {
    if (page.stream && page.streamOpen && Date.now() - page.lastEventAt > STREAM_SILENCE_MS) {
      page.stream.close();
      page.stream = null;
      page.streamOpen = false;
      startPolling();
      setTimeout(openStream, 5000);
    }
  }

  function renderConnection() {
    const box = document.getElementById('connection');
    const text = document.getElementById('connection-text');
    const age = page.fetchedAt ? Date.now() - page.fetchedAt : Infinity;
    let mode;
    if (page.fetchError) {
      mode = 'lost';
      text.textContent = page.fetchedAt
        ? `Connection lost (${page.fetchError}); showing data from ${span(age / 1000)} ago`
        : `Cannot load the data: ${page.fetchError}`;
    } else if (age > STALE_MS) {
      mode = 'lost';
      text.textContent = `No fresh data for ${span(age / 1000)}`;
    } else if (page.streamOpen) {
      mode = 'live';
      text.textContent = 'Live';
    } else {
      mode = 'polling';
      text.textContent = `Updating every ${POLL_MS / 1000} s (no live stream)`;
    }
    box.dataset.mode = mode;
    document.body.classList.toggle('stale', mode === 'lost');
    document.getElementById('updated').textContent = page.fetchedAt && mode !== 'lost'
      ? `updated ${span(age / 1000)} ago` : '';
  }

  function tick() {
    for (const entry of page.clocks) draw(entry);
    watchdog();
    renderConnection();
    if (Date.now() - page.reportAt >= REPORT_REFRESH_MS) loadReport();
  }

  openStream();
  refresh();
  loadReport();
  setInterval(tick, 1000);
})();
