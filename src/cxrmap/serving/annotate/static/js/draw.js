// The drawing board of the review page: a binary mask at the radiograph's own size, edited with brush,
// eraser, lasso (add / remove) and flood fill, with undo/redo, zoom and pan (wheel, drag, pinch, buttons).
// The mask is a Uint8Array (1 = infected); it is shown on a canvas under CSS scaling and sent as RLE.

const MAX_UNDO = 60;

/** Run lengths of a 0/1 mask, row-major, alternating background and foreground, starting with background. */
export function rleEncode(mask) {
  const counts = [];
  let value = 0;
  let run = 0;
  for (let i = 0; i < mask.length; i += 1) {
    const v = mask[i] ? 1 : 0;
    if (v === value) {
      run += 1;
    } else {
      counts.push(run);
      run = 1;
      value = v;
    }
  }
  counts.push(run);
  return counts;
}

/** The 0/1 mask of `size` pixels that `counts` (see rleEncode) describes; throws when they do not add up. */
export function rleDecode(counts, size) {
  const mask = new Uint8Array(size);
  let position = 0;
  let value = 0;
  for (const count of counts) {
    if (!Number.isInteger(count) || count < 0 || position + count > size) throw new Error("bad run lengths");
    if (value) mask.fill(1, position, position + count);
    position += count;
    value ^= 1;
  }
  if (position !== size) throw new Error("run lengths cover " + position + " pixels, not " + size);
  return mask;
}

/** A loaded <img> of a grey mask PNG as a 0/1 mask (pixel on when its value > 127). */
export function maskFromImage(image, width, height) {
  if (image.naturalWidth !== width || image.naturalHeight !== height) {
    throw new Error("the mask is " + image.naturalWidth + " x " + image.naturalHeight + ", not " + width + " x " + height);
  }
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, width, height).data;
  const mask = new Uint8Array(width * height);
  for (let i = 0; i < mask.length; i += 1) mask[i] = data[4 * i] > 127 ? 1 : 0;
  return mask;
}

/** Load an image URL into an <img>; resolves when decoded. */
export function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the image " + url + " could not be loaded"));
    image.src = url;
  });
}

/** Zoom and pan of a stage (the image-sized layers) inside a viewer box, by a CSS transform. */
export class Viewport {
  constructor(viewer, stage, onChange = () => {}) {
    this.viewer = viewer;
    this.stage = stage;
    this.onChange = onChange;
    this.width = 1;
    this.height = 1;
    this.scale = 1;
    this.tx = 0;
    this.ty = 0;
    this.fitted = true;
    new ResizeObserver(() => {
      if (this.fitted) this.fit();
    }).observe(viewer);
  }

  setSize(width, height) {
    this.width = width;
    this.height = height;
    this.stage.style.width = width + "px";
    this.stage.style.height = height + "px";
    this.fit();
  }

  fitScale() {
    const box = this.viewer.getBoundingClientRect();
    return Math.min(box.width / this.width, box.height / this.height) || 1;
  }

  fit() {
    const box = this.viewer.getBoundingClientRect();
    this.scale = this.fitScale();
    this.tx = (box.width - this.width * this.scale) / 2;
    this.ty = (box.height - this.height * this.scale) / 2;
    this.fitted = true;
    this.apply();
  }

  /** Zoom by `factor` keeping the point (x, y) of the viewer box (CSS px) still; default the centre. */
  zoom(factor, x, y) {
    const box = this.viewer.getBoundingClientRect();
    if (x === undefined) {
      x = box.width / 2;
      y = box.height / 2;
    }
    const fit = this.fitScale();
    const scale = Math.min(Math.max(this.scale * factor, fit * 0.5), Math.max(fit * 40, 40));
    this.tx = x - ((x - this.tx) * scale) / this.scale;
    this.ty = y - ((y - this.ty) * scale) / this.scale;
    this.scale = scale;
    this.fitted = false;
    this.apply();
  }

  pan(dx, dy) {
    this.tx += dx;
    this.ty += dy;
    this.fitted = false;
    this.apply();
  }

  apply() {
    this.stage.style.transform = "translate(" + this.tx + "px, " + this.ty + "px) scale(" + this.scale + ")";
    this.onChange(this);
  }

  /** Image coordinates (pixels, fractional) of a point on the screen. */
  toImage(clientX, clientY) {
    const box = this.viewer.getBoundingClientRect();
    return { x: (clientX - box.left - this.tx) / this.scale, y: (clientY - box.top - this.ty) / this.scale };
  }

  /** A point on the screen relative to the viewer box. */
  toViewer(clientX, clientY) {
    const box = this.viewer.getBoundingClientRect();
    return { x: clientX - box.left, y: clientY - box.top };
  }
}

/** The mask being drawn, its display canvas, the tools and the undo history. */
export class MaskEditor {
  constructor(canvas, width, height, onChange = () => {}) {
    this.canvas = canvas;
    this.width = width;
    this.height = height;
    this.onChange = onChange;
    this.mask = new Uint8Array(width * height);
    this.undoStack = [];
    this.redoStack = [];
    canvas.width = width;
    canvas.height = height;
    this.context = canvas.getContext("2d");
    this.pixels = this.context.createImageData(width, height);
    this.color = [0, 165, 224];
    this.stroke = null;
    this.render();
  }

  count() {
    let n = 0;
    for (let i = 0; i < this.mask.length; i += 1) n += this.mask[i];
    return n;
  }

  isEmpty() {
    return this.mask.indexOf(1) < 0;
  }

  toRle() {
    return { format: "rle", width: this.width, height: this.height, counts: rleEncode(this.mask) };
  }

  /** Redraw the display canvas in the box [x0, x1) x [y0, y1) (whole image by default). */
  render(x0 = 0, y0 = 0, x1 = this.width, y1 = this.height) {
    x0 = Math.max(0, Math.floor(x0));
    y0 = Math.max(0, Math.floor(y0));
    x1 = Math.min(this.width, Math.ceil(x1));
    y1 = Math.min(this.height, Math.ceil(y1));
    if (x1 <= x0 || y1 <= y0) return;
    const data = this.pixels.data;
    const [r, g, b] = this.color;
    for (let y = y0; y < y1; y += 1) {
      let i = y * this.width + x0;
      for (let x = x0; x < x1; x += 1, i += 1) {
        const j = 4 * i;
        data[j] = r;
        data[j + 1] = g;
        data[j + 2] = b;
        data[j + 3] = this.mask[i] ? 255 : 0;
      }
    }
    this.context.putImageData(this.pixels, 0, 0, x0, y0, x1 - x0, y1 - y0);
  }

  snapshot() {
    this.undoStack.push(rleEncode(this.mask));
    if (this.undoStack.length > MAX_UNDO) this.undoStack.shift();
    this.redoStack = [];
  }

  canUndo() {
    return this.undoStack.length > 0;
  }

  canRedo() {
    return this.redoStack.length > 0;
  }

  undo() {
    if (!this.undoStack.length) return;
    this.redoStack.push(rleEncode(this.mask));
    this.mask = rleDecode(this.undoStack.pop(), this.mask.length);
    this.render();
    this.onChange();
  }

  redo() {
    if (!this.redoStack.length) return;
    this.undoStack.push(rleEncode(this.mask));
    this.mask = rleDecode(this.redoStack.pop(), this.mask.length);
    this.render();
    this.onChange();
  }

  /** Replace the mask (a candidate to start from, or empty); undoable. */
  load(mask) {
    this.snapshot();
    this.mask = mask ? Uint8Array.from(mask) : new Uint8Array(this.width * this.height);
    this.render();
    this.onChange();
  }

  /** Restore a mask without history (a draft). */
  restore(mask) {
    this.mask = Uint8Array.from(mask);
    this.undoStack = [];
    this.redoStack = [];
    this.render();
  }

  /** A filled disc of diameter `size` centred at (cx, cy) in image pixels; returns its bounding box. */
  stamp(cx, cy, size, value) {
    const radius = Math.max(0.5, size / 2);
    const x0 = Math.max(0, Math.floor(cx - radius));
    const x1 = Math.min(this.width - 1, Math.ceil(cx + radius));
    const y0 = Math.max(0, Math.floor(cy - radius));
    const y1 = Math.min(this.height - 1, Math.ceil(cy + radius));
    const r2 = radius * radius;
    for (let y = y0; y <= y1; y += 1) {
      const dy = y + 0.5 - cy;
      for (let x = x0; x <= x1; x += 1) {
        const dx = x + 0.5 - cx;
        if (dx * dx + dy * dy <= r2) this.mask[y * this.width + x] = value;
      }
    }
    return [x0, y0, x1 + 1, y1 + 1];
  }

  /** Brush (value 1) or eraser (value 0) from `from` to `to` (image points); redraws what changed. */
  segment(from, to, size, value) {
    const distance = Math.hypot(to.x - from.x, to.y - from.y);
    const steps = Math.max(1, Math.ceil(distance / Math.max(0.5, size / 4)));
    let box = [Infinity, Infinity, -Infinity, -Infinity];
    for (let k = 0; k <= steps; k += 1) {
      const t = k / steps;
      const b = this.stamp(from.x + t * (to.x - from.x), from.y + t * (to.y - from.y), size, value);
      box = [Math.min(box[0], b[0]), Math.min(box[1], b[1]), Math.max(box[2], b[2]), Math.max(box[3], b[3])];
    }
    this.render(...box);
  }

  beginStroke(point, size, value) {
    this.snapshot();
    this.stroke = { last: point, size, value };
    this.segment(point, point, size, value);
  }

  continueStroke(point) {
    if (!this.stroke) return;
    this.segment(this.stroke.last, point, this.stroke.size, this.stroke.value);
    this.stroke.last = point;
  }

  endStroke() {
    if (!this.stroke) return;
    this.stroke = null;
    this.onChange();
  }

  /** Fill the polygon `points` (image coordinates; pixel centres inside, even-odd rule) with `value`. */
  fillPolygon(points, value) {
    if (points.length < 3) return false;
    this.snapshot();
    const ys = points.map((p) => p.y);
    const y0 = Math.max(0, Math.floor(Math.min(...ys)));
    const y1 = Math.min(this.height - 1, Math.ceil(Math.max(...ys)));
    let xmin = this.width;
    let xmax = 0;
    for (let y = y0; y <= y1; y += 1) {
      const yc = y + 0.5;
      const xs = [];
      for (let i = 0; i < points.length; i += 1) {
        const a = points[i];
        const b = points[(i + 1) % points.length];
        if ((a.y <= yc && yc < b.y) || (b.y <= yc && yc < a.y)) xs.push(a.x + ((yc - a.y) * (b.x - a.x)) / (b.y - a.y));
      }
      xs.sort((p, q) => p - q);
      for (let k = 0; k + 1 < xs.length; k += 2) {
        const from = Math.max(0, Math.ceil(xs[k] - 0.5));
        const to = Math.min(this.width - 1, Math.floor(xs[k + 1] - 0.5));
        if (to >= from) {
          this.mask.fill(value, y * this.width + from, y * this.width + to + 1);
          xmin = Math.min(xmin, from);
          xmax = Math.max(xmax, to + 1);
        }
      }
    }
    this.render(xmin, y0, xmax, y1 + 1);
    this.onChange();
    return true;
  }

  /** Flood fill (4-connected) the region under (x, y) with the other value: fills a hole, clears a blob. */
  floodFill(point) {
    const x = Math.floor(point.x);
    const y = Math.floor(point.y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return false;
    this.snapshot();
    const { width, height, mask } = this;
    const target = mask[y * width + x];
    const value = target ? 0 : 1;
    const stack = [[x, y]];
    let box = [x, y, x + 1, y + 1];
    while (stack.length) {
      const [sx, sy] = stack.pop();
      let left = sx;
      const row = sy * width;
      if (mask[row + left] !== target) continue;
      while (left > 0 && mask[row + left - 1] === target) left -= 1;
      let right = sx;
      while (right < width - 1 && mask[row + right + 1] === target) right += 1;
      mask.fill(value, row + left, row + right + 1);
      box = [Math.min(box[0], left), Math.min(box[1], sy), Math.max(box[2], right + 1), Math.max(box[3], sy + 1)];
      for (const ny of [sy - 1, sy + 1]) {
        if (ny < 0 || ny >= height) continue;
        const nrow = ny * width;
        let inRun = false;
        for (let nx = left; nx <= right; nx += 1) {
          const match = mask[nrow + nx] === target;
          if (match && !inRun) stack.push([nx, ny]);
          inRun = match;
        }
      }
    }
    this.render(...box);
    this.onChange();
    return true;
  }
}

/**
 * Pointer handling of the viewer: wheel zoom, drag to pan (middle button, the pan tool, Space held, or
 * whenever drawing is off), two-finger pinch, and the drawing tools on the editor returned by `getEditor()`.
 * `getTool()` is one of brush, eraser, lasso-add, lasso-remove, fill, pan; `getSize()` the brush diameter.
 */
export function bindPointer(viewport, { getEditor, getTool, getSize, lassoLine, cursor, spaceHeld }) {
  const viewer = viewport.viewer;
  const pointers = new Map();
  let action = null;

  viewer.addEventListener("wheel", (event) => {
    event.preventDefault();
    const at = viewport.toViewer(event.clientX, event.clientY);
    const amount = event.deltaMode === 1 ? event.deltaY * 16 : event.deltaY;
    viewport.zoom(Math.exp(-amount * 0.0015), at.x, at.y);
  }, { passive: false });

  function drawingTool(event) {
    const editor = getEditor();
    const tool = getTool();
    if (!editor || tool === "pan" || spaceHeld() || event.button === 1) return null;
    if (event.pointerType === "mouse" && event.button !== 0) return null;
    return tool;
  }

  function showCursor(event) {
    const editor = getEditor();
    const tool = getTool();
    const brush = editor && (tool === "brush" || tool === "eraser") && !spaceHeld();
    cursor.toggleAttribute("hidden", !brush || event.pointerType === "touch");
    viewer.classList.toggle("drawing", Boolean(editor) && tool !== "pan" && !spaceHeld());
    if (!brush) return;
    const p = viewport.toImage(event.clientX, event.clientY);
    cursor.setAttribute("cx", p.x);
    cursor.setAttribute("cy", p.y);
    cursor.setAttribute("r", Math.max(0.5, getSize() / 2));
    cursor.classList.toggle("erase", tool === "eraser");
  }

  function cancelDrawing() {
    const editor = getEditor();
    if (action && action.kind === "stroke" && editor) editor.endStroke();
    if (action && action.kind === "lasso") lassoLine.setAttribute("points", "");
    action = null;
  }

  viewer.addEventListener("pointerdown", (event) => {
    viewer.focus({ preventScroll: true });
    pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    viewer.setPointerCapture(event.pointerId);
    if (pointers.size === 2) {
      cancelDrawing();
      const [a, b] = [...pointers.values()];
      action = { kind: "pinch", distance: Math.hypot(a.x - b.x, a.y - b.y), mid: { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 } };
      return;
    }
    if (pointers.size > 2) return;
    event.preventDefault();
    const tool = drawingTool(event);
    const point = viewport.toImage(event.clientX, event.clientY);
    const editor = getEditor();
    if (tool === "brush" || tool === "eraser") {
      action = { kind: "stroke" };
      editor.beginStroke(point, getSize(), tool === "brush" ? 1 : 0);
    } else if (tool === "lasso-add" || tool === "lasso-remove") {
      action = { kind: "lasso", points: [point], value: tool === "lasso-add" && !event.shiftKey ? 1 : 0 };
      lassoLine.setAttribute("points", point.x + "," + point.y);
    } else if (tool === "fill") {
      editor.floodFill(point);
      action = null;
    } else {
      action = { kind: "pan", x: event.clientX, y: event.clientY };
      viewer.classList.add("panning");
    }
  });

  viewer.addEventListener("pointermove", (event) => {
    showCursor(event);
    if (!pointers.has(event.pointerId)) return;
    pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    if (!action) return;
    if (action.kind === "pinch" && pointers.size >= 2) {
      const [a, b] = [...pointers.values()];
      const distance = Math.hypot(a.x - b.x, a.y - b.y);
      const mid = { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
      viewport.pan(mid.x - action.mid.x, mid.y - action.mid.y);
      const at = viewport.toViewer(mid.x, mid.y);
      if (action.distance > 0) viewport.zoom(distance / action.distance, at.x, at.y);
      action.distance = distance;
      action.mid = mid;
    } else if (action.kind === "pan") {
      viewport.pan(event.clientX - action.x, event.clientY - action.y);
      action.x = event.clientX;
      action.y = event.clientY;
    } else if (action.kind === "stroke") {
      const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
      for (const e of events.length ? events : [event]) getEditor().continueStroke(viewport.toImage(e.clientX, e.clientY));
    } else if (action.kind === "lasso") {
      const point = viewport.toImage(event.clientX, event.clientY);
      const last = action.points[action.points.length - 1];
      if (Math.hypot(point.x - last.x, point.y - last.y) * viewport.scale >= 2) {
        action.points.push(point);
        lassoLine.setAttribute("points", action.points.map((p) => p.x + "," + p.y).join(" "));
      }
    }
  });

  function finish(event) {
    if (!pointers.has(event.pointerId)) return;
    pointers.delete(event.pointerId);
    viewer.classList.remove("panning");
    if (!action) return;
    if (action.kind === "pinch") {
      if (pointers.size === 0) action = null;
      return;
    }
    if (action.kind === "stroke") {
      getEditor().endStroke();
    } else if (action.kind === "lasso") {
      lassoLine.setAttribute("points", "");
      if (event.type === "pointerup") getEditor().fillPolygon(action.points, action.value);
    }
    action = null;
  }

  viewer.addEventListener("pointerup", finish);
  viewer.addEventListener("pointercancel", finish);
  viewer.addEventListener("pointerleave", () => cursor.toggleAttribute("hidden", true));
}
