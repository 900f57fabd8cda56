// Tests for math in model text: markdown.js turns TeX into MathML (KaTeX), richtext.js lets
// it through DOMPurify and nothing else. richtext.js needs a DOM, so it runs on jsdom here.
// Run with `node --test tests/js/`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { JSDOM } from 'jsdom';

import { createMarkdown } from '../../static/chat/markdown.js';

const { window } = new JSDOM('<!doctype html><html><body></body></html>', { url: 'http://chat.test/' });
globalThis.window = window;
globalThis.document = window.document;
// DOMPurify binds to the global window when it is first imported, so import it after.
const { markdownFragment } = await import('../../static/chat/richtext.js');

const markdown = createMarkdown();

/** The text a reader sees: without KaTeX's TeX annotations, which are not displayed. */
function visibleText(root) {
  const copy = root.cloneNode(true);
  for (const note of copy.querySelectorAll('annotation')) note.remove();
  return copy.textContent.trim();
}

/** The reply's markdown as the page shows it: a sanitized element. */
function rendered(source) {
  const root = document.createElement('div');
  root.append(markdownFragment(source));
  return root;
}

test('each of the four delimiters becomes a formula', () => {
  for (const [source, display] of [['$E=mc^2$', false], ['\\(E=mc^2\\)', false], ['$$E=mc^2$$', true], ['\\[E=mc^2\\]', true]]) {
    const root = rendered(`Einstein: ${source} today.`);
    const math = root.querySelector('math');
    assert.ok(math, source);
    assert.equal(math.getAttribute('display'), display ? 'block' : null, source);
    assert.equal(root.querySelector('annotation').textContent, 'E=mc^2', source);
    assert.ok(math.querySelector('msup'), `${source}: the power is a superscript`);
    assert.equal(visibleText(root), 'Einstein: E=mc2 today.', source);
  }
});

test('a display formula on its own lines is a block of its own', () => {
  const root = rendered('Before:\n\n$$\n\\frac{a}{b}\n$$\n\nAfter.');
  const block = root.querySelector('p.math-display');
  assert.ok(block?.querySelector('math[display="block"] mfrac'));
  assert.deepEqual([...root.children].map((p) => visibleText(p)), ['Before:', 'ab', 'After.']);
});

test('money is not math', () => {
  for (const source of ['It costs $5 and $10.', 'Between $5-$10 a month', 'From $5/$10 plans', 'A $ 5 $ tip', 'Escaped \\$x$ stays']) {
    const root = rendered(source);
    assert.equal(root.querySelector('math'), null, source);
    assert.match(root.textContent, /\$/, source);
  }
  assert.equal(visibleText(rendered('It costs $5 and $10.')), 'It costs $5 and $10.');
});

test('dollars inside code spans and code blocks stay code', () => {
  const root = rendered('Run `echo $HOME$` now.\n\n```sh\necho $$x$$ \\(y\\)\n```\n');
  assert.equal(root.querySelector('math'), null);
  assert.equal(root.querySelector('p code').textContent, 'echo $HOME$');
  assert.equal(root.querySelector('pre code').textContent, 'echo $$x$$ \\(y\\)');
});

test('KaTeX is used untrusted and leaves no style, link or script behind', () => {
  const root = rendered('$\\href{javascript:alert(1)}{x}$ $\\url{https://evil.example}$ $\\htmlStyle{color:red}{y}$ $\\color{red}{z}$');
  assert.equal(root.querySelectorAll('math').length, 4);
  assert.equal(root.querySelector('[href], [style], [id], script, a'), null);
  const html = markdown.toHtml('$\\htmlId{x}{y}$ $\\includegraphics{https://evil.example/a.png}$');
  assert.doesNotMatch(html, /<img|id="x"/);
});

test('a formula KaTeX cannot read shows its source instead of failing the reply', () => {
  const root = rendered('Broken: $\\frac{1}{$ and fine: $x^2$');
  assert.ok(root.querySelector('msup'), 'the good formula still renders');
  assert.match(root.textContent, /Broken:/);
  const bad = rendered('$\\notacommand{x}$');
  assert.match(bad.textContent, /\\notacommand/);
});

test('raw MathML or HTML from the model is text, never markup', () => {
  const root = rendered('<math><mi>x</mi></math> <img src=x onerror=alert(1)>');
  assert.equal(root.querySelector('math, img'), null);
  assert.match(root.textContent, /<math>/);
});
