// Copies the pinned browser libraries from node_modules/ into static/vendor/ (`npm run vendor`).
// The page loads them as ES modules straight from /static/, so nothing is fetched at run time.
import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const modules = join(root, 'node_modules');
const vendor = join(root, 'static', 'vendor');
// Languages a chat about code mostly needs; others render as plain code.
const LANGUAGES = [
  'bash', 'c', 'cpp', 'css', 'diff', 'go', 'java', 'javascript', 'json', 'markdown',
  'plaintext', 'python', 'rust', 'shell', 'sql', 'typescript', 'xml', 'yaml',
];

// [source inside node_modules, destination inside static/vendor]. `.mjs` becomes `.js` so
// any static server or proxy sends a JavaScript MIME type.
const files = [
  ['marked/lib/marked.esm.js', 'marked/marked.esm.js'],
  ['marked/LICENSE', 'marked/LICENSE'],
  ['dompurify/dist/purify.es.mjs', 'dompurify/purify.es.js'],
  ['dompurify/LICENSE', 'dompurify/LICENSE'],
  ['dompurify/LICENSE-MPL', 'dompurify/LICENSE-MPL'],
  ['@highlightjs/cdn-assets/es/core.min.js', 'highlight/core.min.js'],
  ['@highlightjs/cdn-assets/LICENSE', 'highlight/LICENSE'],
  ['@highlightjs/cdn-assets/styles/github.min.css', 'highlight/github.min.css'],
  ['@highlightjs/cdn-assets/styles/github-dark.min.css', 'highlight/github-dark.min.css'],
  ...LANGUAGES.map((name) => [`@highlightjs/cdn-assets/es/languages/${name}.min.js`, `highlight/languages/${name}.min.js`]),
  // KaTeX renders MathML only (the page's CSP forbids the inline styles of its HTML output), so
  // neither its CSS nor its fonts are needed.
  ['katex/dist/katex.mjs', 'katex/katex.js'],
  ['katex/LICENSE', 'katex/LICENSE'],
];
// axe-core is for the browser tests only (tests/test_browser_finish.py), never served to users.
const testFiles = [
  ['axe-core/axe.min.js', 'axe-core/axe.min.js'],
  ['axe-core/LICENSE', 'axe-core/LICENSE'],
];
const testVendor = join(root, 'tests', 'vendor');

for (const dir of ['marked', 'dompurify', 'highlight', 'katex']) rmSync(join(vendor, dir), { recursive: true, force: true });
rmSync(join(testVendor, 'axe-core'), { recursive: true, force: true });
for (const [base, list] of [[vendor, files], [testVendor, testFiles]]) {
  for (const [from, to] of list) {
    mkdirSync(dirname(join(base, to)), { recursive: true });
    copyFileSync(join(modules, from), join(base, to));
  }
}
for (const name of ['marked', 'dompurify', '@highlightjs/cdn-assets', 'katex', 'axe-core']) {
  const { version } = JSON.parse(readFileSync(join(modules, name, 'package.json'), 'utf8'));
  console.log(`${name}@${version}`);
}
console.log(`copied ${files.length} files into static/vendor/, ${testFiles.length} into tests/vendor/`);
