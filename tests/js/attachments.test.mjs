// Tests of the page's attachments (issue 22): the composer's list of files and its courtesy
// checks (static/chat/attachments.js), and the files a message carries through the reducer
// (protocol.js: `start` names them, an `edit` never does, a refusal keeps them). Run with
// `node --test tests/js/`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  createUploadList, formatSize, guessKind, precheck, uploadErrorText,
} from '../../static/chat/attachments.js';
import {
  addLocalMessage, applyFrame, beginEdit, createThreadState, makeStart, mergeMessages, retryLocalMessage,
} from '../../static/chat/protocol.js';

const NOTES = {
  id: 'a1', name: 'notes.txt', mime_type: 'text/plain', size: 2048, kind: 'text', url: '/api/attachments/a1/content',
};
const CHART = {
  id: 'a2', name: 'chart.png', mime_type: 'image/png', size: 50_000, kind: 'image', url: '/api/attachments/a2/content',
};

test('a size reads as people read it', () => {
  assert.equal(formatSize(0), '0 B');
  assert.equal(formatSize(812), '812 B');
  assert.equal(formatSize(1024), '1 KB');
  assert.equal(formatSize(4300), '4.2 KB');
  assert.equal(formatSize(50_000), '49 KB');
  assert.equal(formatSize(10 * 1024 * 1024), '10 MB');
  assert.equal(formatSize(1.5 * 1024 ** 3), '1.5 GB');
});

test('the courtesy checks refuse an empty file, one over the limit and a type no model takes', () => {
  assert.equal(precheck({ name: 'a.txt', size: 10, type: 'text/plain' }), null);
  assert.equal(precheck({ name: 'a.txt', size: 10 }, { maxBytes: 10 }), null);
  assert.match(precheck({ name: 'a.txt', size: 0 }), /a\.txt is empty/);
  assert.match(precheck({ name: 'big.pdf', size: 60_000 }, { maxBytes: 50_000 }), /big\.pdf is 59 KB: the limit is 49 KB/);
  // Without the server's limit the page does not guess one.
  assert.equal(precheck({ name: 'big.pdf', size: 900 * 1024 * 1024 }), null);
  for (const file of [
    { name: 'clip.mov', size: 5, type: 'video/quicktime' },
    { name: 'logo.svg', size: 5, type: 'image/svg+xml' },
    { name: 'setup.EXE', size: 5, type: '' },
    { name: 'report.docx', size: 5, type: '' },
  ]) {
    assert.match(precheck(file), /can't be attached: images \(PNG, JPEG, WebP, GIF\), PDFs and text files can/, file.name);
  }
  // A name the page does not know (source code, a log) is the server's to judge.
  assert.equal(precheck({ name: 'main.rs', size: 5, type: '' }), null);
  assert.equal(precheck({ name: 'Makefile', size: 5, type: '' }), null);
});

test('a file’s kind is guessed for its icon until the server says', () => {
  assert.equal(guessKind({ name: 'image.png', type: 'image/png' }), 'image');
  assert.equal(guessKind({ name: 'Photo.JPG' }), 'image');
  assert.equal(guessKind({ name: 'paper.pdf', type: 'application/pdf' }), 'document');
  assert.equal(guessKind({ name: 'notes.md', type: '' }), 'text');
});

test('a refused upload says the server’s message, and a failure without an answer says so', () => {
  const refused = Object.assign(new Error('The file is over 50,000 bytes.'), { status: 413, code: 'too_large' });
  assert.equal(uploadErrorText(refused), 'The file is over 50,000 bytes.');
  assert.equal(uploadErrorText(Object.assign(new Error('Your quota is spent.'), { status: 429 })), 'Your quota is spent.');
  assert.match(uploadErrorText(Object.assign(new Error('x'), { status: 502 })), /server failed \(502\)/);
  assert.match(uploadErrorText(Object.assign(new Error('x'), { status: 403 })), /reload the page/);
  assert.match(uploadErrorText(new Error('The upload did not get through.')), /did not get through/);
});

test('the list says what a message carries: uploaded files only, and none while held by a send', () => {
  const list = createUploadList();
  const notes = list.add({ name: 'notes.txt', size: 2048, type: 'text/plain' });
  const chart = list.add({ name: 'image.png', size: 50_000, type: 'image/png' });
  const empty = list.add({ name: 'empty.txt', size: 0 });
  assert.deepEqual(list.items().map((i) => i.status), ['uploading', 'uploading', 'error']);
  assert.match(empty.error, /empty/);
  assert.equal(list.uploading(), true);
  assert.equal(list.hasImage(), true);
  list.progress(notes.key, 1024);
  assert.equal(notes.loaded, 1024);
  list.uploaded(notes.key, NOTES);
  assert.equal(list.uploading(), true, 'the image still uploads');
  list.uploaded(chart.key, CHART);
  assert.equal(chart.name, 'chart.png', 'the server’s name wins');
  assert.equal(list.uploading(), false);
  assert.deepEqual(list.ready(), [NOTES, CHART]);

  list.hold(['a1', 'a2']);
  assert.deepEqual(list.ready(), [], 'held files are not sent twice');
  list.release(['a2']);
  assert.deepEqual(list.ready(), [CHART], 'a refused message gives its files back');
  assert.deepEqual(list.sent(['a1']).map((i) => i.name), ['notes.txt']);
  assert.deepEqual(list.items().map((i) => i.name), ['chart.png', 'empty.txt']);
  list.remove(empty.key);
  list.failed(chart.key, 'gone');
  assert.equal(list.hasImage(), false, 'a refused image needs no vision');
});

test('a start carries the uploaded ids and its local copy shows the files; without files no key', () => {
  const { command, message } = makeStart('Sum these up', 'c1', { attachments: [NOTES, CHART] });
  assert.deepEqual(command.attachments, ['a1', 'a2']);
  assert.deepEqual(message.attachments.map((a) => a.name), ['notes.txt', 'chart.png']);
  assert.equal('attachments' in makeStart('plain', 'c2').command, false);
  assert.equal('attachments' in makeStart('plain', 'c3', { attachments: [] }).command, false);
});

test('a saved message keeps its files through a reload, a frame and a refetch', () => {
  const saved = {
    id: 'u1', role: 'user', content: 'Look', status: 'complete', client_id: 'c1', created_at: '2026-01-01T00:00:00Z', attachments: [CHART],
  };
  const state = createThreadState([saved]);
  assert.deepEqual(state.byId.get('u1').attachments, [CHART]);
  assert.deepEqual(createThreadState([{ ...saved, attachments: undefined }]).byId.get('u1').attachments, []);

  const live = createThreadState([]);
  const { message } = makeStart('Look', 'c9', { attachments: [CHART] });
  addLocalMessage(live, message);
  const r = applyFrame(live, { type: 'message', message: { ...saved, id: 'u9', client_id: 'c9' } });
  assert.deepEqual(r.renamed, [{ from: 'c9', to: 'u9' }]);
  assert.deepEqual(live.byId.get('u9').attachments, [CHART]);
  mergeMessages(live, [{ ...saved, id: 'u9', client_id: 'c9' }]);
  assert.deepEqual(live.byId.get('u9').attachments, [CHART]);
});

test('a refused start keeps its files on the failed message, and its retry sends them again', () => {
  const state = createThreadState([]);
  const { message } = makeStart('What is this?', 'c1', { attachments: [CHART] });
  addLocalMessage(state, message);
  const r = applyFrame(state, {
    type: 'error', code: 'bad_request', message: 'The model second-model does not take images: pick one that does.', recoverable: false,
  });
  assert.deepEqual(r.failed, ['c1']);
  assert.deepEqual(state.byId.get('c1').attachments, [CHART]);
  // A refusal worth retrying as it is (busy) sends the same files.
  const busy = createThreadState([]);
  addLocalMessage(busy, makeStart('Again', 'c2', { attachments: [NOTES] }).message);
  applyFrame(busy, { type: 'error', code: 'busy', message: 'A reply is running.' });
  const { command } = retryLocalMessage(busy, 'c2');
  assert.deepEqual(command.attachments, ['a1']);
});

test('an edit never names attachments, so the server keeps the message’s files, which its copy shows', () => {
  const state = createThreadState([
    {
      id: 'u1', role: 'user', content: 'Sum this up', status: 'complete', created_at: '2026-01-01T00:00:00Z', attachments: [NOTES],
    },
    { id: 'r1', role: 'assistant', content: 'Done', status: 'complete', created_at: '2026-01-01T00:00:01Z' },
  ]);
  const { command } = beginEdit(state, 'u1', 'Sum this up in French', 'c5');
  assert.equal('attachments' in command, false, 'an empty list would drop the files');
  assert.deepEqual(state.byId.get('c5').attachments, [NOTES]);
});
