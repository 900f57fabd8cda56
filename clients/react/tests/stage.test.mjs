// The package as npm would publish it: self-contained, with the page's modules beside it.
// Run with `node --test clients/react/tests/`.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { importsOf, stage } from '../scripts/stage.mjs';

function filesUnder(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(path) : [path];
  });
}

test('the staged package imports nothing outside itself and exports what the repository does', async () => {
  const out = mkdtempSync(join(tmpdir(), 'chat-react-test-'));
  try {
    stage(out);
    const manifest = JSON.parse(readFileSync(join(out, 'package.json'), 'utf8'));
    for (const entry of manifest.files) assert.ok(existsSync(join(out, entry)), `${entry} is staged`);
    for (const file of filesUnder(out).filter((f) => f.endsWith('.js'))) {
      for (const path of importsOf(readFileSync(file, 'utf8'))) {
        const target = resolve(dirname(file), path);
        assert.ok(!relative(out, target).startsWith('..'), `${relative(out, file)} imports ${path}, outside the package`);
        assert.ok(existsSync(target), `${relative(out, file)} imports ${path}, which is not staged`);
      }
    }
    assert.ok(existsSync(join(out, 'src/chat/client.js')) && existsSync(join(out, 'src/chat/api.js')));
    const staged = await import(pathToFileURL(join(out, 'src/chat.js')).href);
    const here = await import('../src/chat.js');
    assert.deepEqual(Object.keys(staged).sort(), Object.keys(here).sort());
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
