// Tests for static/chat/markdown.js: run with `node --test tests/js/`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createMarkdown, escapeHtml, safeUrl, settledLength, splitBlocks } from '../../static/chat/markdown.js';

test('the settled part ends at the last blank line', () => {
  const text = 'First paragraph.\n\nSecond one\nstill going';
  assert.equal(settledLength(text), 'First paragraph.\n\n'.length);
  assert.equal(settledLength('no blank line yet\nmore'), 0);
});

test('a blank line inside a code fence does not settle anything', () => {
  const text = 'Intro.\n\n```python\ndef f():\n\n    return 1\n';
  assert.equal(settledLength(text), 'Intro.\n\n'.length, 'the fence is still open');
  const closed = `${text}\`\`\`\n\nAfter.`;
  assert.equal(settledLength(closed), closed.length - 'After.'.length);
});

test('a fence closes only with the same character and at least its length', () => {
  const text = '````\n```\n\nstill code\n~~~\n\n````\n\nout';
  assert.equal(settledLength(text), text.length - 'out'.length);
  assert.deepEqual(splitBlocks(text.slice(0, settledLength(text))), ['````\n```\n\nstill code\n~~~\n\n````\n\n']);
});

test('an indented fence inside a list item is still a fence', () => {
  const text = '- item\n\n  ```js\n  a();\n\n  b();\n  ```\n\nend';
  assert.deepEqual(splitBlocks(text), ['- item\n\n', '  ```js\n  a();\n\n  b();\n  ```\n\n', 'end']);
});

test('the last line is never a boundary until its newline arrives', () => {
  assert.equal(settledLength('para\n'), 0);
  assert.equal(settledLength('para\n\n'), 6);
  assert.equal(settledLength('para\n  '), 0, 'a blank line still being written');
});

test('scanning from an earlier answer gives the same result as scanning it all', () => {
  const text = 'a\n\n```\nx\n\ny\n```\n\nb\nc\n\nd\n\n\ne';
  let from = 0;
  for (let i = 0; i <= text.length; i += 1) {
    from = settledLength(text.slice(0, i), from);
    assert.equal(from, settledLength(text.slice(0, i)), `prefix of ${i} chars`);
  }
});

test('blocks joined are the input, and blank runs join the block before them', () => {
  const text = 'one\n\n\n\ntwo\n\n```\nA\n\nB\n```\n\nthree';
  const blocks = splitBlocks(text);
  assert.equal(blocks.join(''), text);
  assert.deepEqual(blocks, ['one\n\n\n\n', 'two\n\n', '```\nA\n\nB\n```\n\n', 'three']);
});

test('only http(s) and mailto links are safe, however they are spelled', () => {
  assert.equal(safeUrl('https://example.com/a?b=1'), 'https://example.com/a?b=1');
  assert.equal(safeUrl('mailto:a@example.com'), 'mailto:a@example.com');
  for (const bad of ['javascript:alert(1)', 'JaVaScRiPt:alert(1)', 'java\tscript:alert(1)', ' javascript:x', 'data:text/html,<b>', 'vbscript:x', '/relative', null]) {
    assert.equal(safeUrl(bad), null, String(bad));
  }
});

test('raw HTML from the model is shown as text, never as markup', () => {
  const md = createMarkdown();
  const html = md.toHtml('Look: <img src=x onerror="alert(1)"> and <script>alert(2)</script>\n\n<iframe src="https://evil"></iframe>');
  assert.doesNotMatch(html, /<img|<script|<iframe/i);
  assert.match(html, /&lt;img src=x onerror=/);
  assert.match(html, /&lt;script&gt;/);
});

test('links keep only safe targets and open in a new tab without an opener', () => {
  const md = createMarkdown();
  const html = md.toHtml('[ok](https://example.com "t") [bad](javascript:alert(1)) <javascript:alert(2)> https://auto.example');
  assert.match(html, /<a href="https:\/\/example.com" title="t" target="_blank" rel="noopener noreferrer">ok<\/a>/);
  assert.doesNotMatch(html, /href="javascript/i);
  assert.match(html, /> bad javascript:alert\(2\) </, 'refused links stay as plain text');
  assert.match(html, /<a href="https:\/\/auto.example" target="_blank" rel="noopener noreferrer">/);
});

test('images become links, so nothing is fetched on sight', () => {
  const md = createMarkdown();
  const html = md.toHtml('![pixel](https://tracker.example/p.png) ![x](javascript:alert(1))');
  assert.doesNotMatch(html, /<img/i);
  assert.match(html, /<a href="https:\/\/tracker.example\/p.png"/);
  assert.doesNotMatch(html, /javascript:/i);
});

test('code blocks carry a cleaned language class and escaped text', () => {
  const md = createMarkdown();
  const html = md.toHtml('```Python" onclick="x\nif a < b: print("<b>")\n```');
  assert.match(html, /<pre><code class="language-python">/);
  assert.match(html, /if a &lt; b: print\(&quot;&lt;b&gt;&quot;\)/);
});

test('single newlines are line breaks, as people type them', () => {
  assert.match(createMarkdown().toHtml('line one\nline two'), /line one<br>line two/);
});

test('escapeHtml escapes the five special characters', () => {
  assert.equal(escapeHtml(`<a href="x" title='y'>&</a>`), '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
});
