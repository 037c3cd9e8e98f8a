/* "Try the firmware": a drawing pad, MNIST-style preprocessing, and the int8 engine's
   WebAssembly build (embedded as base64, so the page works from file://).
   window.lenetTry is the page's test hook. */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("try-config").textContent);
  var pad = document.getElementById("try-canvas");
  var ctx = pad.getContext("2d", { willReadFrequently: true });
  var small = document.getElementById("try-digit");
  var sctx = small.getContext("2d");
  var statusEl = document.getElementById("try-status");
  var classEl = document.getElementById("try-class");
  var bars = Array.prototype.slice.call(document.querySelectorAll("#try-bars .try-bar"));
  var MIN_CONTRAST = 24; /* grey levels, as lenet-edge predict */
  var engine = null;
  var drawing = false;
  var last = null;
  var pending = false;

  var hook = {
    ready: false,
    error: null,
    last: null, /* {pixels, scores, class} of the last drawing run */
    runs: 0,
    predictPixels: function (pixels) {
      var r = engine.predict(Uint8Array.from(pixels));
      show(Uint8Array.from(pixels), r);
      return { scores: Array.prototype.slice.call(r.scores), class: r.class };
    },
    canvasGray: function () {
      return Array.prototype.slice.call(padGray());
    },
    preprocess: function (gray, w, h) {
      var p = mnistStyle(Float64Array.from(gray), w, h);
      return p && Array.prototype.slice.call(p);
    },
    clear: clearPad
  };
  window.lenetTry = hook;

  /* Round half to even, like numpy's rint and Python's round. */
  function rint(x) {
    var f = Math.floor(x);
    var d = x - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return f % 2 === 0 ? f : f + 1;
  }

  function clamp(x, lo, hi) {
    return Math.min(hi, Math.max(lo, x));
  }

  /* Area-averaging weights from n source pixels to m target pixels. */
  function weights(n, m) {
    var s = n / m;
    var out = [];
    for (var j = 0; j < m; j++) {
      var a = j * s;
      var b = (j + 1) * s;
      var list = [];
      for (var i = Math.floor(a); i < Math.min(n, Math.ceil(b)); i++) {
        var w = Math.min(b, i + 1) - Math.max(a, i);
        if (w > 0) list.push([i, w / s]);
      }
      out.push(list);
    }
    return out;
  }

  function resample(src, w, h, nw, nh) {
    var wx = weights(w, nw);
    var wy = weights(h, nh);
    var tmp = new Float64Array(h * nw);
    var y, x, k;
    for (y = 0; y < h; y++) {
      for (x = 0; x < nw; x++) {
        var acc = 0;
        for (k = 0; k < wx[x].length; k++) acc += src[y * w + wx[x][k][0]] * wx[x][k][1];
        tmp[y * nw + x] = acc;
      }
    }
    var out = new Float64Array(nh * nw);
    for (y = 0; y < nh; y++) {
      for (x = 0; x < nw; x++) {
        var sum = 0;
        for (k = 0; k < wy[y].length; k++) sum += tmp[wy[y][k][0] * nw + x] * wy[y][k][1];
        out[y * nw + x] = clamp(sum, 0, 1);
      }
    }
    return out;
  }

  /* Light-on-dark grey levels (w x h) -> MNIST-style 28x28 uint8, or null when blank:
     contrast stretch and noise floor, crop to the ink, longer side scaled to the box,
     centre of mass moved to the centre by whole pixels (lenet_edge/predict.py). */
  function mnistStyle(gray, w, h) {
    var max = 0;
    var i, x, y;
    for (i = 0; i < gray.length; i++) max = Math.max(max, gray[i]);
    if (max < MIN_CONTRAST) return null;
    var nf = cfg.noiseFloor;
    var ink = new Float64Array(w * h);
    var top = h, bottom = -1, left = w, right = -1;
    for (y = 0; y < h; y++) {
      for (x = 0; x < w; x++) {
        var v = clamp((clamp(gray[y * w + x] / max, 0, 1) - nf) / (1 - nf), 0, 1);
        ink[y * w + x] = v;
        if (v > 0) {
          top = Math.min(top, y);
          bottom = Math.max(bottom, y);
          left = Math.min(left, x);
          right = Math.max(right, x);
        }
      }
    }
    if (bottom < 0) return null;
    var ch = bottom - top + 1;
    var cw = right - left + 1;
    var crop = new Float64Array(ch * cw);
    for (y = 0; y < ch; y++) {
      for (x = 0; x < cw; x++) crop[y * cw + x] = ink[(top + y) * w + left + x];
    }
    var scale = cfg.box / Math.max(ch, cw);
    var nh = Math.max(1, rint(ch * scale));
    var nw = Math.max(1, rint(cw * scale));
    var patch = resample(crop, cw, ch, nw, nh);
    var total = 0, sy = 0, sx = 0;
    for (y = 0; y < nh; y++) {
      for (x = 0; x < nw; x++) {
        var p = patch[y * nw + x];
        total += p;
        sy += y * p;
        sx += x * p;
      }
    }
    if (total <= 0) return null;
    var field = cfg.field;
    var t = clamp(rint(cfg.centre - sy / total), 0, field - nh);
    var l = clamp(rint(cfg.centre - sx / total), 0, field - nw);
    var out = new Uint8Array(field * field);
    for (y = 0; y < nh; y++) {
      for (x = 0; x < nw; x++) out[(t + y) * field + l + x] = rint(patch[y * nw + x] * 255);
    }
    return out;
  }

  function padGray() {
    var d = ctx.getImageData(0, 0, pad.width, pad.height).data;
    var g = new Float64Array(pad.width * pad.height);
    for (var i = 0; i < g.length; i++) g[i] = (d[4 * i] + d[4 * i + 1] + d[4 * i + 2]) / 3;
    return g;
  }

  function show(pixels, r) {
    var img = sctx.createImageData(small.width, small.height);
    for (var i = 0; i < pixels.length; i++) {
      img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = pixels[i];
      img.data[4 * i + 3] = 255;
    }
    sctx.putImageData(img, 0, 0);
    bars.forEach(function (bar, c) {
      var q = r ? r.scores[c] : null;
      bar.querySelector(".try-fill").style.width = r ? ((q + 128) / 255) * 100 + "%" : "0";
      bar.querySelector(".try-score").textContent = r ? String(q) : "–";
      bar.classList.toggle("try-top", !!r && c === r.class);
    });
    classEl.textContent = r ? String(r.class) : "–";
  }

  function run() {
    pending = false;
    if (!engine) return;
    var pixels = mnistStyle(padGray(), pad.width, pad.height);
    if (!pixels) {
      show(new Uint8Array(cfg.field * cfg.field), null);
      hook.last = null;
      return;
    }
    var r = engine.predict(pixels);
    show(pixels, r);
    hook.runs += 1;
    hook.last = {
      pixels: Array.prototype.slice.call(pixels),
      scores: Array.prototype.slice.call(r.scores),
      class: r.class
    };
  }

  function clearPad() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
    show(new Uint8Array(cfg.field * cfg.field), null);
    hook.last = null;
  }

  function point(e) {
    var rect = pad.getBoundingClientRect();
    return [
      ((e.clientX - rect.left) * pad.width) / rect.width,
      ((e.clientY - rect.top) * pad.height) / rect.height
    ];
  }

  function stroke(a, b) {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = pad.width / 14;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(a[0], a[1]);
    ctx.lineTo(b[0], b[1]);
    ctx.stroke();
  }

  pad.addEventListener("pointerdown", function (e) {
    e.preventDefault();
    if (pad.setPointerCapture) pad.setPointerCapture(e.pointerId);
    drawing = true;
    last = point(e);
    stroke(last, last);
  });
  pad.addEventListener("pointermove", function (e) {
    if (!drawing) return;
    var p = point(e);
    stroke(last, p);
    last = p;
    if (!pending) {
      pending = true;
      window.requestAnimationFrame(run);
    }
  });
  function end() {
    if (!drawing) return;
    drawing = false;
    run();
  }
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  document.getElementById("try-clear").addEventListener("click", clearPad);

  clearPad();
  window[cfg.global]
    .loadBase64(cfg.wasm)
    .then(function (e) {
      engine = e;
      hook.ready = true;
      statusEl.textContent = "engine loaded: draw a digit";
    })
    .catch(function (err) {
      hook.error = String(err);
      statusEl.textContent = "the engine could not be loaded: " + err;
    });
})();
