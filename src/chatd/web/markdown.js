// A small Markdown renderer that builds DOM nodes: untrusted text only ever reaches the
// page through textContent / createTextNode, never innerHTML, and links keep only
// http(s) and mailto targets. It covers what models write in chat answers: paragraphs,
// headings, fenced code blocks, lists, block quotes, rules, inline code, bold, italic and
// links. An unterminated code fence (a reply still streaming) renders as an open block.

const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)\s*$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
const BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
const ORDERED = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;

/** Render Markdown `source` into a DocumentFragment. */
export function renderMarkdown(source) {
  const fragment = document.createDocumentFragment();
  renderBlocks(String(source).replace(/\r\n?/g, "\n").split("\n"), fragment);
  return fragment;
}

function renderBlocks(lines, parent) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i += 1;
      continue;
    }
    const fence = FENCE.exec(line);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1; // the closing fence (or the end of a reply still streaming)
      parent.append(codeBlock(body.join("\n"), fence[2]));
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      const h = document.createElement(`h${Math.min(heading[1].length + 2, 6)}`);
      renderInline(heading[2], h);
      parent.append(h);
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      parent.append(document.createElement("hr"));
      i += 1;
      continue;
    }
    if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && QUOTE.test(lines[i])) {
        inner.push(QUOTE.exec(lines[i])[1]);
        i += 1;
      }
      const quote = document.createElement("blockquote");
      renderBlocks(inner, quote);
      parent.append(quote);
      continue;
    }
    if (BULLET.test(line) || ORDERED.test(line)) {
      const ordered = !BULLET.test(line);
      const pattern = ordered ? ORDERED : BULLET;
      const list = document.createElement(ordered ? "ol" : "ul");
      if (ordered) {
        const start = Number(ORDERED.exec(line)[1]);
        if (start !== 1) list.start = start;
      }
      let item = null;
      while (i < lines.length && lines[i].trim()) {
        const match = pattern.exec(lines[i]);
        if (match) {
          item = document.createElement("li");
          renderInline(ordered ? match[2] : match[1], item);
          list.append(item);
        } else if (/^\s+\S/.test(lines[i]) && item) {
          item.append(document.createElement("br"));
          renderInline(lines[i].trim(), item);
        } else {
          break;
        }
        i += 1;
      }
      parent.append(list);
      continue;
    }
    const paragraph = [];
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i])) {
      paragraph.push(lines[i]);
      i += 1;
    }
    const p = document.createElement("p");
    paragraph.forEach((text, n) => {
      if (n) p.append(document.createElement("br"));
      renderInline(text, p);
    });
    parent.append(p);
  }
}

function startsBlock(line) {
  return [FENCE, HEADING, RULE, QUOTE, BULLET, ORDERED].some((re) => re.test(line));
}

function codeBlock(text, language) {
  const wrapper = document.createElement("div");
  wrapper.className = "code-block";
  const pre = document.createElement("pre");
  const code = document.createElement("code");
  if (language) {
    code.className = `language-${language}`;
    code.dataset.language = language;
  }
  code.textContent = text;
  pre.append(code);
  pre.tabIndex = 0; // long lines scroll horizontally; keyboard users need to reach them
  pre.setAttribute("aria-label", language ? `${language} code` : "code");
  wrapper.append(pre);
  return wrapper;
}

// Inline syntax, first match wins at each position: `code`, **bold**, __bold__,
// *italic*, _italic_, [text](url), and bare http(s) links.
const INLINE =
  /(`+)([\s\S]*?[^`])\1(?!`)|\*\*(?=\S)([\s\S]*?\S)\*\*|__(?=\S)([\s\S]*?\S)__|\*(?=[^\s*])([\s\S]*?[^\s*])\*|(?<![\w])_(?=[^\s_])([\s\S]*?[^\s_])_(?![\w])|\[([^\]\n]+)\]\(\s*<?([^)\s>]+)>?\s*\)|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/g;

/** Append the inline Markdown of `text` to `parent`. */
export function renderInline(text, parent) {
  const pattern = new RegExp(INLINE); // its own lastIndex: renderInline recurses
  let last = 0;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    if (match.index > last) parent.append(document.createTextNode(text.slice(last, match.index)));
    last = pattern.lastIndex;
    const [, ticks, code, bold1, bold2, em1, em2, linkText, linkUrl, bare] = match;
    if (ticks) {
      const el = document.createElement("code");
      el.textContent = code.length > 2 && code.startsWith(" ") && code.endsWith(" ")
        ? code.slice(1, -1)
        : code;
      parent.append(el);
    } else if (bold1 !== undefined || bold2 !== undefined) {
      const el = document.createElement("strong");
      renderInline(bold1 ?? bold2, el);
      parent.append(el);
    } else if (em1 !== undefined || em2 !== undefined) {
      const el = document.createElement("em");
      renderInline(em1 ?? em2, el);
      parent.append(el);
    } else if (linkText !== undefined) {
      parent.append(link(linkUrl, linkText, match[0]));
    } else if (bare) {
      parent.append(link(bare, null, bare));
    }
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
}

/**
 * An `<a>` opening `url` in a new tab without the opener or a referrer, or null when
 * the URL is not http(s) or mailto (a `javascript:` link never becomes one).
 */
export function safeAnchor(url) {
  let target = null;
  try {
    target = new URL(url, document.baseURI);
  } catch {
    return null;
  }
  if (!SAFE_PROTOCOLS.has(target.protocol)) return null;
  const a = document.createElement("a");
  a.href = target.href;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  return a;
}

function link(url, label, original) {
  const a = safeAnchor(url);
  if (!a) return document.createTextNode(original);
  if (label === null) a.textContent = url;
  else renderInline(label, a);
  return a;
}
