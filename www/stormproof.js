/* stormproof.js: a WebSocket that reconnects without storming a small device.

  const sp = new Stormproof('/live');          // path, or a full ws:// URL
  sp.addEventListener('state', e => show(e.detail));
  sp.addEventListener('message', e => use(e.data));
  sp.send('hello');                            // false when not open

  - One socket at a time; events from an old socket are ignored.
  - After a failed or lost connection it waits random() * min(maxDelay,
    baseDelay * 2^(failures-1)) ms ("full jitter"), so tabs that lost the
    device together do not come back together.
  - The failure count resets only when a connection was open for healthyAfter
    ms: a server that accepts and drops at once cannot make it reconnect fast.
  - A device that is full completes the handshake and closes at once with
    1013 (Try Again Later), reason "retry=<ms>". The helper then waits that
    long plus random() * retryJitter ms, in state "full". (A refused handshake,
    e.g. a 503, shows up in a page only as 1006, hence this signal.)
  - On pagehide the socket is closed cleanly (a reload frees its slot at once)
    and reopened if the page comes back from the back/forward cache.
  - pauseWhenHidden: ms a tab may stay hidden before its socket is closed
    (false: never); it reconnects when shown again.

  States (sp.state, and e.detail.state with e.detail.delay in ms and
  e.detail.code/reason of the close that led there): connecting, open,
  retry (backing off), full (device full), paused (hidden), closed (close()).
  Options: protocols, baseDelay 500, maxDelay 30000, healthyAfter 10000,
  openTimeout 10000, retryJitter 1000, pauseWhenHidden false; for tests:
  clock {now, setTimeout, clearTimeout}, random, WebSocket, window.
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
    this.ws = null;
    this.timer = null;
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
    if (this.timer !== null) c.clearTimeout(this.timer);
    this.timer = ms === null ? null : c.setTimeout(() => { this.timer = null; fn(); }, ms);
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
      const healthy = this.openedAt !== undefined &&
        this.opts.clock.now() - this.openedAt >= this.opts.healthyAfter;
      this.openedAt = undefined;
      if (healthy) this.failures = 0;
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
    this.openedAt = undefined;
    if (ws) ws.close(1000, reason);
    this._set(state);
  }

  _visibility() {
    if (this.doc.visibilityState === 'visible') {
      if (this.state === 'paused' || this.hideTimer) {
        this.opts.clock.clearTimeout(this.hideTimer);
        this.hideTimer = null;
        if (this.state === 'paused') this._connect();
      }
    } else if (this.state !== 'closed') {
      this.hideTimer = this.opts.clock.setTimeout(() => {
        this.hideTimer = null;
        this._drop('paused', 'tab hidden');
      }, this.opts.pauseWhenHidden);
    }
  }
}
