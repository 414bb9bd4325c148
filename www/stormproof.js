/* stormproof.js: a WebSocket that reconnects without storming a small device.

  const sp = new Stormproof('/live');   // a path on this host, or a ws:// URL
  sp.addEventListener('state', (e) => show(e.detail));
  sp.addEventListener('message', (e) => use(e.data));
  sp.send('hi');                        // false unless open; sp.close() ends it

  One socket at a time. After a failure it waits random() * min(maxDelay,
  baseDelay * 2^(failures-1)) ms (full jitter); the count resets only after a
  connection stayed open healthyAfter ms. A full device completes the
  handshake and closes with 1013, reason "retry=<ms>": the helper waits that
  plus random() * retryJitter, without counting a failure. pagehide closes
  the socket (a reload frees its slot at once); pauseWhenHidden: ms hidden
  before closing (false: never), reconnecting when shown.
  e.detail: state (connecting, open, retry, full, paused, closed), delay (ms),
  code, reason, attempt. Options (defaults): protocols [], baseDelay 500,
  maxDelay 30000, healthyAfter 10000, openTimeout 10000, retryJitter 1000,
  pauseWhenHidden false; clock {now, setTimeout, clearTimeout}, random,
  WebSocket, window: for tests.
*/
class Stormproof extends EventTarget {
  constructor(url, opts = {}) {
    super();
    const w = opts.window || globalThis;
    this.opts = Object.assign({
      protocols: [], baseDelay: 500, maxDelay: 30000, healthyAfter: 10000,
      openTimeout: 10000, retryJitter: 1000, pauseWhenHidden: false,
      clock: { now: () => Date.now(), setTimeout: (f, ms) => w.setTimeout(f, ms), clearTimeout: (t) => w.clearTimeout(t) },
      random: Math.random, WebSocket: w.WebSocket,
    }, opts);
    this.url = /^wss?:/.test(url) ? url
      : (w.location.protocol === 'https:' ? 'wss://' : 'ws://') + w.location.host + url;
    this.state = 'idle';
    this.failures = 0;
    this.openedAt = NaN;  // not open: never healthy
    this.ws = null;
    this.doc = w.document;
    if (w.addEventListener) {
      w.addEventListener('pagehide', () => this._drop('paused', 'page hidden'));
      w.addEventListener('pageshow', (e) => { if (e.persisted) this._connect(); });
    }
    if (this.doc && this.opts.pauseWhenHidden !== false) {
      this.doc.addEventListener('visibilitychange', () => this._visibility());
    }
    this._connect();
  }

  send(data) {
    if (this.state !== 'open') return false;
    this.ws.send(data);
    return true;
  }

  close() {
    this._drop('closed', 'closed by page');
  }

  _set(state, detail = {}) {
    this.state = state;
    detail.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail }));
  }

  _later(ms, fn) {
    const c = this.opts.clock;
    c.clearTimeout(this.timer);
    this.timer = ms === null ? null : c.setTimeout(fn, ms);
  }

  _connect() {
    if (this.ws || this.state === 'closed') return;
    this._later(null);
    let ws;
    try {
      ws = new this.opts.WebSocket(this.url, this.opts.protocols);
    } catch (e) {
      this._retry(1006, String(e));
      return;
    }
    this.ws = ws;
    this._set('connecting', { attempt: this.failures + 1 });
    this._later(this.opts.openTimeout, () => { if (ws === this.ws) ws.close(); });
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this._later(null);
      this.openedAt = this.opts.clock.now();
      this._set('open');
    };
    ws.onmessage = (e) => {
      if (ws === this.ws) this.dispatchEvent(new MessageEvent('message', { data: e.data }));
    };
    ws.onclose = (e) => {
      if (ws !== this.ws) return;
      this.ws = null;
      if (this.opts.clock.now() - this.openedAt >= this.opts.healthyAfter) this.failures = 0;
      this.openedAt = NaN;
      this._retry(e.code, e.reason || '');
    };
  }

  _retry(code, reason) {
    const o = this.opts;
    const m = code === 1013 && /^retry=(\d+)$/.exec(reason);
    let delay, state;
    if (m) {
      // The device is full, not broken: its own delay, and no failure counted.
      delay = Math.round(Number(m[1]) + o.random() * o.retryJitter);
      state = 'full';
    } else {
      this.failures++;
      const ceiling = Math.min(o.maxDelay, o.baseDelay * 2 ** (this.failures - 1));
      delay = Math.round(o.random() * ceiling);
      state = code === 1013 ? 'full' : 'retry';
    }
    this._set(state, { delay, code, reason, attempt: this.failures });
    this._later(delay, () => this._connect());
  }

  _drop(state, reason) {
    this._later(null);
    const ws = this.ws;
    this.ws = null;
    this.openedAt = NaN;
    if (ws) ws.close(1000, reason);
    this._set(state);
  }

  _visibility() {
    const c = this.opts.clock;
    c.clearTimeout(this.hideTimer);
    if (this.doc.visibilityState !== 'visible') {
      if (this.state !== 'closed') {
        this.hideTimer = c.setTimeout(() => this._drop('paused', 'tab hidden'), this.opts.pauseWhenHidden);
      }
    } else if (this.state === 'paused') this._connect();
  }
}
