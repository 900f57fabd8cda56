/**
 * Markdown for model replies, DOM-free: where a streaming text can be cut into settled blocks,
 * and markdown to HTML with a strict first line of defence. The HTML still goes through
 * DOMPurify before it reaches the DOM (see richtext.js and message.js); this module makes sure that even
 * without it, no raw HTML from the model, no `javascript:` link and no remote image survives.
 *
 * Incremental rendering: a reply only grows while it streams, and markdown blocks before the
 * last blank line outside a code fence cannot change any more (new text starts a new block).
 * The settled part is cut into blocks that are rendered once and cached; only the short live
 * tail after it is re-rendered per animation frame.
 */
import katex from '../vendor/katex/katex.js';
import { Marked } from '../vendor/marked/marked.esm.js';

// Any indentation: a fence inside a list item is indented too.
const FENCE = /^\s*(`{3,}|~{3,})/;
const SAFE_URL = /^(?:https?:|mailto:)/i;

/**
 * Scan lines from `from` (a position outside any code fence, at the start of a line) and
 * report every position just after a blank line outside a fence.
 * @param {string} text
 * @param {number} from
 * @param {(boundary: number) => void} onBoundary
 */
function scanBoundaries(text, from, onBoundary) {
  let fence = null;
  let pos = from;
  while (pos < text.length) {
    const end = text.indexOf('\n', pos);
    // The last line has no newline yet: it may still grow, so it is never a boundary.
    if (end === -1) return;
    const line = text.slice(pos, end);
    const open = FENCE.exec(line);
    if (fence) {
      // A closing fence: the same character, at least as long, nothing after it.
      if (open && open[1][0] === fence[0] && open[1].length >= fence.length && !line.trim().slice(open[1].length)) fence = null;
    } else if (open) {
      fence = open[1];
    } else if (!line.trim()) {
      onBoundary(end + 1);
    }
    pos = end + 1;
  }
}

/**
 * Length of the settled part of `text`: everything up to the last blank line outside a code
 * fence. Only text after `from` is scanned, so a growing reply costs the size of its tail.
 * @param {string} text  the reply so far
 * @param {number} [from] a previous answer for a prefix of the same text (0 to scan it all)
 * @returns {number} an index <= text.length, >= from
 */
export function settledLength(text, from = 0) {
  let last = from;
  scanBoundaries(text, from, (boundary) => {
    last = boundary;
  });
  return last;
}

/**
 * Cut settled text into markdown blocks at blank lines outside code fences. Joined, the
 * blocks are the input again.
 * @param {string} text  settled text (it starts outside a code fence)
 * @returns {string[]}
 */
export function splitBlocks(text) {
  const blocks = [];
  let start = 0;
  const push = (piece) => {
    // Runs of blank lines join the block before them instead of making empty blocks.
    if (blocks.length && !piece.trim()) blocks[blocks.length - 1] += piece;
    else blocks.push(piece);
  };
  scanBoundaries(text, 0, (boundary) => {
    push(text.slice(start, boundary));
    start = boundary;
  });
  if (start < text.length) push(text.slice(start));
  return blocks;
}

/**
 * A link target the page may follow: http(s) and mailto only.
 * @param {string|null|undefined} href
 * @returns {string|null}
 */
export function safeUrl(href) {
  if (typeof href !== 'string') return null;
  // Browsers ignore control characters and spaces in a scheme (`java\tscript:`), so must we.
  const url = href.replace(/[\u0000-\u0020\u007f-\u009f]/g, '');
  return SAFE_URL.test(url) ? url : null;
}

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * Escape text for HTML text or a quoted attribute.
 * @param {string} text
 * @returns {string}
 */
export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

// Math in model text. `$…$` follows pandoc's rule so that money stays text: the opening `$`
// is followed by a non-space, the closing one follows a non-space and is not followed by a
// digit (`$5 and $10` is no formula). `\$` is a literal dollar. Display math (`$$…$$`,
// `\[…\]`) may span lines; inline math (`$…$`, `\(…\)`) stays on one line.
const INLINE_MATH = /^(?:\$\$([^]+?)\$\$|\\\[([^]+?)\\\]|\\\(([^\n]+?)\\\)|\$(?![\s$])((?:\\.|[^\\$\n])+?)(?<!\s)\$(?!\d))/;
const BLOCK_MATH = /^ {0,3}(?:\$\$([^]+?)\$\$|\\\[([^]+?)\\\])[ \t]*(?:\n+|$)/;
const MATH_START = /\$|\\[[(]/;
const BLOCK_MATH_START = /^ {0,3}(?:\$\$|\\\[)/m;

/**
 * TeX as MathML, never as HTML with inline styles (the page's CSP refuses those). `trust:
 * false` keeps out `\href`, `\url` and `\html…`; a formula KaTeX cannot read shows as its
 * source in red instead of throwing.
 * @param {string} tex
 * @param {boolean} display
 * @returns {string} HTML (a `span.katex` holding a `math` element)
 */
export function mathHtml(tex, display) {
  try {
    return katex.renderToString(tex, {
      displayMode: display, output: 'mathml', throwOnError: false, trust: false, strict: 'ignore', maxSize: 20, maxExpand: 200,
    });
  } catch {
    return `<code>${escapeHtml(tex)}</code>`;
  }
}

const MATH = [
  {
    name: 'mathBlock',
    level: 'block',
    start(src) {
      return BLOCK_MATH_START.exec(src)?.index;
    },
    tokenizer(src) {
      const match = BLOCK_MATH.exec(src);
      if (match) return { type: 'mathBlock', raw: match[0], text: (match[1] ?? match[2]).trim() };
      return undefined;
    },
    renderer({ text }) {
      return `<p class="math-display">${mathHtml(text, true)}</p>\n`;
    },
  },
  {
    name: 'mathInline',
    level: 'inline',
    start(src) {
      return MATH_START.exec(src)?.index;
    },
    tokenizer(src) {
      const match = INLINE_MATH.exec(src);
      if (!match) return undefined;
      const display = match[1] !== undefined || match[2] !== undefined;
      const text = (match[1] ?? match[2] ?? match[3] ?? match[4]).trim();
      return text ? { type: 'mathInline', raw: match[0], text, display } : undefined;
    },
    renderer({ text, display }) {
      return mathHtml(text, display);
    },
  },
];

/**
 * A markdown renderer for untrusted model text (GFM, single newlines kept as line breaks).
 * Raw HTML is shown as text, links keep only http(s)/mailto targets, images become links
 * (a remote image would be fetched on sight: a tracking pixel, and nothing loads offline),
 * code blocks carry their language for the highlighter, and TeX outside code becomes MathML.
 * @returns {{toHtml(markdown: string): string}}
 */
export function createMarkdown() {
  const marked = new Marked({ gfm: true, breaks: true, async: false });
  marked.use({
    extensions: MATH,
    renderer: {
      html({ text }) {
        return escapeHtml(text);
      },
      link({ href, title, tokens }) {
        const label = this.parser.parseInline(tokens);
        const url = safeUrl(href);
        if (!url) return label;
        const titled = title ? ` title="${escapeHtml(title)}"` : '';
        return `<a href="${escapeHtml(url)}"${titled} target="_blank" rel="noopener noreferrer">${label}</a>`;
      },
      image({ href, text }) {
        const url = safeUrl(href);
        const label = escapeHtml(text || href || 'image');
        if (!url) return label;
        return `<a href="${escapeHtml(url)}" target="_blank" rel="noopener noreferrer">🖼 ${label}</a>`;
      },
      code({ text, lang }) {
        const language = (lang || '').trim().split(/\s+/)[0].toLowerCase().replace(/[^a-z0-9_+#-]/g, '');
        const cls = language ? ` class="language-${language}"` : '';
        return `<pre><code${cls}>${escapeHtml(text)}</code></pre>\n`;
      },
    },
  });
  return {
    toHtml(markdown) {
      return marked.parse(markdown);
    },
  };
}
