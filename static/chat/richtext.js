/**
 * Model text to DOM: markdown (markdown.js, math as MathML) sanitized by DOMPurify, code blocks highlighted
 * and given a copy button, rendered incrementally while a reply streams. No HTML reaches the
 * DOM without DOMPurify; the chrome around code blocks is built with createElement.
 */
import DOMPurify from '../vendor/dompurify/purify.es.js';
import hljs from '../vendor/highlight/core.min.js';
import bash from '../vendor/highlight/languages/bash.min.js';
import c from '../vendor/highlight/languages/c.min.js';
import cpp from '../vendor/highlight/languages/cpp.min.js';
import css from '../vendor/highlight/languages/css.min.js';
import diff from '../vendor/highlight/languages/diff.min.js';
import go from '../vendor/highlight/languages/go.min.js';
import java from '../vendor/highlight/languages/java.min.js';
import javascript from '../vendor/highlight/languages/javascript.min.js';
import json from '../vendor/highlight/languages/json.min.js';
import markdownLanguage from '../vendor/highlight/languages/markdown.min.js';
import plaintext from '../vendor/highlight/languages/plaintext.min.js';
import python from '../vendor/highlight/languages/python.min.js';
import rust from '../vendor/highlight/languages/rust.min.js';
import shell from '../vendor/highlight/languages/shell.min.js';
import sql from '../vendor/highlight/languages/sql.min.js';
import typescript from '../vendor/highlight/languages/typescript.min.js';
import xml from '../vendor/highlight/languages/xml.min.js';
import yaml from '../vendor/highlight/languages/yaml.min.js';
import { createMarkdown, safeUrl, settledLength, splitBlocks } from './markdown.js';

const LANGUAGES = {
  bash, c, cpp, css, diff, go, java, javascript, json, markdown: markdownLanguage, plaintext, python, rust, shell, sql, typescript, xml, yaml,
};
for (const [name, grammar] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, grammar);
hljs.configure({ ignoreUnescapedHTML: true });

// A tail longer than this is shown as plain text until it settles: re-parsing it per frame
// would make a reply without blank lines (one huge paragraph or code block) quadratic.
const PLAIN_TAIL_CHARS = 6000;

// DOMPurify's MathML profile (for KaTeX's output, markdown.js) plus the few HTML tags markdown
// makes. KaTeX wraps each formula in `semantics` with its TeX as an `annotation`, both of
// which the profile leaves out; they are inert. No `id` (DOM clobbering) and no `style` (CSP).
const PURIFY = {
  USE_PROFILES: { mathMl: true },
  ADD_TAGS: [
    'a', 'p', 'br', 'strong', 'em', 'del', 's', 'code', 'pre', 'blockquote', 'ul', 'ol', 'li',
    'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'input', 'span',
    'semantics', 'annotation',
  ],
  ADD_ATTR: ['href', 'title', 'class', 'start', 'type', 'checked', 'disabled', 'align', 'target', 'rel'],
  FORBID_ATTR: ['id', 'style', 'xlink:href', 'xml:id'],
  // With a URI regexp this strict, DOMPurify drops any other attribute whose value is not a
  // URL (`display="block"`, `start="3"`) unless it is named here as never holding one.
  ADD_URI_SAFE_ATTR: [
    'start', 'align', 'accent', 'accentunder', 'columnalign', 'columnlines', 'columnspacing', 'depth', 'display',
    'displaystyle', 'encoding', 'fence', 'height', 'largeop', 'linethickness', 'lspace', 'mathbackground', 'mathcolor',
    'mathsize', 'mathvariant', 'maxsize', 'minsize', 'movablelimits', 'notation', 'rowlines', 'rowspacing', 'rspace',
    'scriptlevel', 'separator', 'stretchy', 'symmetric', 'voffset', 'width',
  ],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.nodeName === 'A') {
    const href = safeUrl(node.getAttribute('href'));
    if (href) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    } else {
      node.removeAttribute('href');
    }
  } else if (node.nodeName === 'INPUT') {
    // GFM task-list boxes only, and never editable.
    node.setAttribute('type', 'checkbox');
    node.setAttribute('disabled', '');
  }
});

const markdown = createMarkdown();

/**
 * Sanitized DOM for a piece of markdown.
 * @param {string} source
 * @returns {DocumentFragment}
 */
export function markdownFragment(source) {
  return DOMPurify.sanitize(markdown.toHtml(source), PURIFY);
}

function languageOf(code) {
  const match = /(?:^|\s)language-([\w+#-]+)/.exec(code.className);
  return match ? match[1] : '';
}

// Code blocks get a header with their language and a copy button; settled ones are highlighted.
function decorateCode(root, highlight) {
  for (const pre of root.querySelectorAll('pre')) {
    const code = pre.querySelector('code');
    if (!code || pre.parentElement?.classList.contains('codeblock')) continue;
    const language = languageOf(code);
    const frame = document.createElement('div');
    frame.className = 'codeblock';
    const head = document.createElement('div');
    head.className = 'codeblock__head';
    const label = document.createElement('span');
    label.textContent = language || 'code';
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'codeblock__copy';
    copy.dataset.copyCode = '';
    copy.textContent = 'Copy';
    copy.setAttribute('aria-label', `Copy ${language || 'code'}`);
    head.append(label, copy);
    pre.replaceWith(frame);
    frame.append(head, pre);
    if (highlight && language && hljs.getLanguage(language)) {
      try {
        hljs.highlightElement(code);
      } catch {
        // A grammar that chokes leaves the code plain, which is still correct.
      }
    }
  }
}

/**
 * One settled block of a reply as a DOM element.
 * @param {string} source
 * @returns {HTMLElement}
 */
function blockElement(source) {
  const block = document.createElement('div');
  block.className = 'md-block';
  block.append(markdownFragment(source));
  decorateCode(block, true);
  return block;
}

/**
 * A reply's text rendered into `container`, updated as the reply grows. Settled blocks are
 * parsed, sanitized and highlighted once; the live tail is re-rendered on each update.
 * @param {HTMLElement} container
 * @returns {{update(text: string, final: boolean): void, text(): string}}
 */
export function createRichText(container) {
  const tail = document.createElement('div');
  tail.className = 'md-tail';
  container.replaceChildren(tail);
  let text = '';
  let settled = 0;
  let tailSource = null;
  let plainTail = null;

  function reset() {
    container.replaceChildren(tail);
    text = '';
    settled = 0;
    tailSource = null;
    plainTail = null;
  }

  function renderTail(source) {
    if (source === tailSource) return;
    if (source.length > PLAIN_TAIL_CHARS) {
      if (!plainTail || !source.startsWith(tailSource)) {
        plainTail = document.createTextNode(source);
        tail.className = 'md-tail md-tail--plain';
        tail.replaceChildren(plainTail);
      } else {
        plainTail.appendData(source.slice(tailSource.length));
      }
    } else {
      plainTail = null;
      tail.className = 'md-tail';
      const fragment = markdownFragment(source);
      decorateCode(fragment, false);
      tail.replaceChildren(fragment);
    }
    tailSource = source;
  }

  return {
    update(next, final) {
      // Replies only grow while they stream; anything else (a snapshot, a refetch) starts over.
      if (!next.startsWith(text.slice(0, settled))) reset();
      text = next;
      const upTo = final ? next.length : settledLength(next, settled);
      if (upTo > settled) {
        for (const piece of splitBlocks(next.slice(settled, upTo))) tail.before(blockElement(piece));
        settled = upTo;
      }
      renderTail(next.slice(settled));
    },
    text: () => text,
  };
}

/**
 * Put text on the clipboard; falls back to a hidden textarea where the async API is missing
 * (an insecure origin) or refused.
 * @param {string} value
 * @returns {Promise<boolean>}
 */
export async function copyText(value) {
  try {
    await navigator.clipboard.writeText(value);
    return true;
  } catch {
    const area = document.createElement('textarea');
    area.value = value;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}
