// Drives www/stormproof.js on a fake clock, with fake sockets, a fake window
// and a scripted random(): test_browser.py loads this after the helper and
// steps it through window.harness, then compares what it logged with the
// schedule the helper's documentation promises.
(() => {
  let now = 0;
  let timers = [];
  let nextId = 1;
  const clock = {
    now: () => now,
    setTimeout: (f, ms) => { timers.push({ id: nextId, at: now + ms, f }); return nextId++; },
    clearTimeout: (id) => { timers = timers.filter((t) => t.id !== id); },
  };
  const sockets = [];
  const log = [];
  let overlaps = 0;

  class FakeSocket {
    constructor(url, protocols) {
      // One socket at a time: every earlier one must have ended or been closed.
      if (sockets.some((s) => !s.ended && !s.closedWith)) overlaps++;
      this.url = url;
      this.protocols = protocols;
      this.sent = [];
      this.closedWith = null;
      this.ended = false;
      sockets.push(this);
    }
    send(data) { this.sent.push(data); }
    close(code, reason) { this.closedWith = [code ?? null, reason ?? null]; }
  }

  function make(opts) {
    const win = new EventTarget();
    win.location = { protocol: 'http:', host: 'device.local' };
    win.document = new EventTarget();
    win.document.visibilityState = 'visible';
    const randoms = opts.randoms;
    let r = 0;
    const sp = new Stormproof('/live', Object.assign({}, opts.options, {
      clock, window: win, WebSocket: FakeSocket,
      random: () => randoms[r++ % randoms.length],
    }));
    sp.addEventListener('state', (e) => log.push(Object.assign({ t: now, kind: 'state' }, e.detail)));
    sp.addEventListener('message', (e) => log.push({ t: now, kind: 'message', data: e.data }));
    return { sp, win };
  }

  let cur = null;
  const last = () => sockets[sockets.length - 1];
  window.harness = {
    start(opts) { cur = make(opts); return this.info(); },
    // Runs every timer due by now + ms, in order, each at its own time.
    advance(ms) {
      const end = now + ms;
      for (;;) {
        timers.sort((a, b) => a.at - b.at || a.id - b.id);
        const t = timers[0];
        if (!t || t.at > end) break;
        timers.shift();
        now = t.at;
        t.f();
      }
      now = end;
      return this.info();
    },
    open() { last().onopen({}); return this.info(); },
    // The server (or the network) ends the newest socket.
    end(code, reason) {
      const s = last();
      s.ended = true;
      s.onclose({ code, reason: reason || '', wasClean: code !== 1006 });
      return this.info();
    },
    // A socket the helper asked to close reports its end, as a browser does.
    finish(index) {
      const s = sockets[index];
      s.ended = true;
      s.onclose({ code: 1006, reason: '', wasClean: false });
      return this.info();
    },
    message(data) { last().onmessage({ data }); return this.info(); },
    send(data) { return cur.sp.send(data); },
    close() { cur.sp.close(); return this.info(); },
    pagehide() { cur.win.dispatchEvent(new PageTransitionEvent('pagehide', { persisted: true })); return this.info(); },
    pageshow() { cur.win.dispatchEvent(new PageTransitionEvent('pageshow', { persisted: true })); return this.info(); },
    visibility(state) {
      cur.win.document.visibilityState = state;
      cur.win.document.dispatchEvent(new Event('visibilitychange'));
      return this.info();
    },
    info() {
      const s = last();
      return {
        now, state: cur && cur.sp.state, sockets: sockets.length, overlaps,
        url: s ? s.url : null, sent: s ? s.sent : [], closedWith: s ? s.closedWith : null,
        log: log.slice(), timers: timers.length,
      };
    },
  };
})();
