// Stage the package for npm: its own files, plus the chat page's modules that src/chat.js
// imports from static/chat/ (and what they import), put beside it in src/chat/. The
// repository keeps one copy of those modules; only the tarball carries a second.
//
//   npm publish "$(node clients/react/scripts/stage.mjs)"      # or --out DIR
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PAGE = resolve(PACKAGE, '../../static/chat');
const PAGE_PREFIX = '../../../static/chat/';
const IMPORT = /\bfrom\s+'([^']+)'/g;

/** The relative module paths a module's `from '...'` clauses name. */
export function importsOf(source) {
  return [...source.matchAll(IMPORT)].map((m) => m[1]).filter((path) => path.startsWith('.'));
}

/** The page modules src/chat.js needs, with everything they import in turn. */
function pageModules(chat) {
  const found = new Set();
  const pending = importsOf(chat).filter((p) => p.startsWith(PAGE_PREFIX)).map((p) => p.slice(PAGE_PREFIX.length));
  while (pending.length) {
    const name = pending.pop();
    if (found.has(name)) continue;
    if (name.includes('/')) throw new Error(`static/chat/${name}: only modules beside client.js can be staged`);
    found.add(name);
    pending.push(...importsOf(readFileSync(join(PAGE, name), 'utf8')).map((p) => p.replace(/^\.\//, '')));
  }
  return [...found].sort();
}

/**
 * Write the package as npm would publish it into `out`.
 * @param {string} out
 * @returns {string} out
 */
export function stage(out) {
  const manifest = JSON.parse(readFileSync(join(PACKAGE, 'package.json'), 'utf8'));
  const chat = readFileSync(join(PACKAGE, 'src/chat.js'), 'utf8');
  const copy = (from, to) => {
    mkdirSync(dirname(to), { recursive: true });
    copyFileSync(from, to);
  };
  copy(join(PACKAGE, 'package.json'), join(out, 'package.json'));
  for (const entry of manifest.files) {
    if (entry === 'src/') continue;
    copy(join(PACKAGE, entry), join(out, entry));
  }
  for (const name of readdirSync(join(PACKAGE, 'src'))) {
    if (name.endsWith('.js') && name !== 'chat.js') copy(join(PACKAGE, 'src', name), join(out, 'src', name));
  }
  writeFileSync(join(out, 'src/chat.js'), chat.replaceAll(`'${PAGE_PREFIX}`, "'./chat/"));
  for (const name of pageModules(chat)) copy(join(PAGE, name), join(out, 'src/chat', name));
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf('--out');
  const out = at === -1 ? mkdtempSync(join(tmpdir(), 'chat-react-')) : resolve(process.argv[at + 1]);
  console.log(stage(out));
}
