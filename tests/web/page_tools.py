"""What the page tests do to a page besides clicking: viewports, colour schemes, keys, contrast, axe.

Everything goes through the DevTools protocol of :mod:`web.cdp`; nothing here needs npm, except
:func:`find_axe`, which looks for an ``axe-core`` checkout the machine may have (see its docstring).
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any

from web.cdp import Page

REPO_ROOT = Path(__file__).resolve().parents[2]

# key: (code, Windows virtual key code, text typed)
KEYS: dict[str, tuple[str, int, str | None]] = {
    "Tab": ("Tab", 9, None),
    "Enter": ("Enter", 13, "\r"),
    "Escape": ("Escape", 27, None),
    " ": ("Space", 32, " "),
    "ArrowLeft": ("ArrowLeft", 37, None),
    "ArrowUp": ("ArrowUp", 38, None),
    "ArrowRight": ("ArrowRight", 39, None),
    "ArrowDown": ("ArrowDown", 40, None),
}
SHIFT = 8  # CDP modifier bit


async def press(page: Page, key: str, *, shift: bool = False, times: int = 1) -> None:
    """Press and release ``key`` as a keyboard would (default actions included: Tab moves focus)."""
    if key in KEYS:
        code, vk, text = KEYS[key]
    else:  # a letter
        code, vk, text = f"Key{key.upper()}", ord(key.upper()), key
    modifiers = SHIFT if shift else 0
    for _ in range(times):
        down: dict[str, Any] = {"key": key, "code": code, "windowsVirtualKeyCode": vk, "modifiers": modifiers}
        if text is not None:
            down["text"] = text
        await page.send("Input.dispatchKeyEvent", type="keyDown" if text else "rawKeyDown", **down)
        await page.send(
            "Input.dispatchKeyEvent",
            type="keyUp",
            key=key,
            code=code,
            windowsVirtualKeyCode=vk,
            modifiers=modifiers,
        )


async def tab_to(page: Page, element_id: str, *, backwards: bool = False, limit: int = 30) -> int:
    """Press Tab (Shift+Tab) until ``element_id`` has the focus; how many presses it took."""
    for presses in range(limit + 1):
        if await page.evaluate(f"document.activeElement && document.activeElement.id === {element_id!r}"):
            return presses
        await press(page, "Tab", shift=backwards)
    focused = await page.evaluate("document.activeElement && document.activeElement.outerHTML.slice(0, 80)")
    raise AssertionError(f"#{element_id} not reached in {limit} Tab presses; focus is on {focused}")


async def set_viewport(page: Page, width: int, height: int) -> None:
    """Emulate a ``width`` x ``height`` CSS-pixel screen (a phone's when narrow: meta viewport applies)."""
    await page.send(
        "Emulation.setDeviceMetricsOverride",
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=width < 800,
    )
    await page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


async def emulate_color_scheme(page: Page, scheme: str) -> None:
    """``prefers-color-scheme`` as the system would set it: ``"light"`` or ``"dark"``."""
    await page.send(
        "Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": scheme}]
    )
    await page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


async def full_screenshot(page: Page, path: Path) -> Path:
    """The whole page (beyond the viewport), at the emulated width."""
    metrics = await page.send("Page.getLayoutMetrics")
    size = metrics["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    data = await page.send("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(data["data"]))
    return path


def screenshot_dir(fallback: Path) -> Path:
    """``MUSICMED_SCREENSHOT_DIR`` when set (to keep the pictures for a look), else ``fallback``."""
    folder = os.environ.get("MUSICMED_SCREENSHOT_DIR")
    return Path(folder) if folder else fallback


# --- contrast ------------------------------------------------------------------------------------

# Every visible element with text of its own (and every text field), its colour composited over
# the backgrounds behind it (all ancestors' background colours and opacities), and the WCAG ratio.
# The page uses flat colours only, so background colours are the whole story.
CONTRAST_JS = r"""
((rootSelector) => {
  const parse = (c) => {
    const m = /rgba?\(([^)]+)\)/.exec(c);
    if (!m) return null;
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3])).concat(1);
  const channel = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = (c) => 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2]);
  const ratio = (a, b) => {
    const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  };
  const background = (el) => {
    const layers = [];
    for (let n = el; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
      if (n.tagName === "DIALOG") break;
    }
    return layers.reverse().reduce((bg, c) => over(c, bg), [255, 255, 255, 1]);
  };
  const opacity = (el) => {
    let o = 1;
    for (let n = el; n; n = n.parentElement) o *= Number(getComputedStyle(n).opacity);
    return o;
  };
  const shown = (el) => {
    const r = el.getBoundingClientRect();
    if (r.width < 2 || r.height < 2 || el.closest(".sr-only")) return false;
    return el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true });
  };
  const skip = new Set(["SCRIPT", "STYLE", "OPTION", "OPTGROUP", "DATALIST", "CANVAS", "TITLE"]);
  const out = [];
  for (const el of document.querySelectorAll(rootSelector)) {
    if (skip.has(el.tagName)) continue;
    const field = el.matches("input:not([type=range]):not([type=hidden]), select, textarea");
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!(own || field) || !shown(el)) continue;
    const bg = background(el);
    const fg = parse(getComputedStyle(el).color);
    const seen = over([fg[0], fg[1], fg[2], fg[3] * opacity(el)], bg);
    const value = field ? el.value || el.selectedOptions?.[0]?.text || "" : el.textContent;
    out.push({
      tag: el.tagName.toLowerCase(), id: el.id, text: value.trim().slice(0, 40),
      ratio: Math.round(ratio(seen, bg) * 100) / 100, color: getComputedStyle(el).color,
      background: `rgb(${bg.slice(0, 3).map(Math.round).join(", ")})`,
    });
  }
  return out;
})
"""


async def text_contrast(page: Page, root_selector: str = "body *") -> list[dict[str, Any]]:
    """Contrast of every visible text element under ``root_selector`` (see :data:`CONTRAST_JS`)."""
    return await page.evaluate(f"({CONTRAST_JS})({json.dumps(root_selector)})")


def parse_color(text: str) -> tuple[float, float, float, float]:
    """``#rrggbb`` or ``rgb(a)(...)`` as (r, g, b, alpha) with channels 0..255."""
    text = text.strip()
    if text.startswith("#") and len(text) == 7:
        return (int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16), 1.0)
    m = re.fullmatch(r"rgba?\(([^)]*)\)", text)
    if not m:
        raise ValueError(f"not a colour this helper reads: {text!r}")
    parts = [float(p) for p in re.split(r"[\s,/]+", m.group(1).strip()) if p]
    return (parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else 1.0)


def composite(top: tuple[float, ...], under: tuple[float, ...]) -> tuple[float, float, float, float]:
    a = top[3]
    r, g, b = (top[i] * a + under[i] * (1 - a) for i in range(3))
    return (r, g, b, 1.0)


def contrast_ratio(fg: tuple[float, ...], bg: tuple[float, ...]) -> float:
    """WCAG 2 contrast ratio of two opaque colours."""

    def luminance(c: tuple[float, ...]) -> float:
        def channel(v: float) -> float:
            v /= 255
            return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

        return 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2])

    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# --- axe-core ------------------------------------------------------------------------------------


def find_axe() -> Path | None:
    """``axe.min.js`` of npm's ``axe-core``: ``$AXE_CORE_JS``, or a ``node_modules`` in the checkout
    or its parent (``npm install axe-core`` there). ``None`` when there is none."""
    candidates = [os.environ.get("AXE_CORE_JS", "")]
    candidates += [str(base / "node_modules/axe-core/axe.min.js") for base in (REPO_ROOT, REPO_ROOT.parent)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


async def run_axe(page: Page, axe_js: Path) -> list[dict[str, Any]]:
    """axe-core's violations on the page (WCAG 2.x A and AA rules), each with impact and targets."""
    await page.evaluate(axe_js.read_text(encoding="utf-8") + "\n;true")
    script = """
      axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa",
                                                           "best-practice"]}})
        .then((r) => r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                                                 nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5)})))
    """
    return await page.evaluate(script)
