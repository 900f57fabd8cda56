/**
 * The composer's files: the ways a file comes in (the attach button and its file input,
 * dropping files on the thread or the composer, pasting an image), each file's upload as soon
 * as it comes (api.js uploadAttachment, with progress), and its chip: name, size, progress,
 * the server's refusal, and Remove (which deletes an uploaded file the server keeps
 * unsent). The list itself is attachments.js's; the composer asks it what a message carries.
 *
 * @typedef {import('./protocol.js').Attachment} Attachment
 * @typedef {object} UploadTray
 * @property {() => Attachment[]} ready      uploaded files the next message carries
 * @property {() => boolean} uploading       an upload runs (Send waits)
 * @property {() => boolean} hasImage
 * @property {(ids: string[]) => void} hold  they went with a message on its way: not removable
 * @property {(ids: string[]) => void} release  that message was refused: they stay, to send again
 * @property {(ids: string[]) => void} sent  the server took them with a message: chips go
 * @property {(files: Iterable<File>) => void} take  attach these files (what drop and paste do)
 */
import * as api from './api.js';
import { createUploadList, formatSize, uploadErrorText } from './attachments.js';
import { fileIcon } from './attachmentview.js';
import { el } from './dom.js';

/**
 * Wire the composer's files under `root`.
 * @param {ParentNode} root
 * @param {object} options
 * @param {number|null} options.maxBytes  the server's upload limit, if the page knows it
 * @param {import('./notices.js').Notices} options.notices
 * @param {() => void} options.onChange   the list changed (Send and the vision hint follow it)
 * @returns {UploadTray}
 */
export function createUploadTray(root, { maxBytes, notices, onChange }) {
  const form = root.querySelector('[data-composer]');
  const attach = root.querySelector('[data-action="attach"]');
  const input = root.querySelector('[data-attach-input]');
  const tray = root.querySelector('[data-uploads]');
  const zone = root.querySelector('[data-drop-zone]') ?? form;
  const list = createUploadList();
  /** @type {Map<number, {chip: HTMLElement, icon: HTMLElement, name: HTMLElement, meta: HTMLElement,
   *   bar: HTMLProgressElement, remove: HTMLButtonElement, iconKey: string}>} a chip's elements */
  const chips = new Map();
  const aborts = new Map();

  function buildChip(item) {
    const chip = el('li', 'upload');
    const icon = el('span', 'upload__icon');
    const body = el('span', 'upload__body');
    const name = el('span', 'upload__name', item.name);
    name.title = item.name;
    const meta = el('span', 'upload__meta');
    const bar = el('progress', 'upload__progress');
    bar.max = 1;
    bar.setAttribute('aria-label', `Uploading ${item.name}`);
    body.append(name, meta, bar);
    const remove = el('button', 'upload__remove', '×');
    remove.type = 'button';
    remove.dataset.action = 'remove-attachment';
    remove.setAttribute('aria-label', `Remove ${item.name}`);
    remove.title = 'Remove';
    remove.addEventListener('click', () => drop(item.key));
    chip.append(icon, body, remove);
    chips.set(item.key, { chip, icon, name, meta, bar, remove, iconKey: '' });
    tray.append(chip);
    draw(item);
  }

  function draw(item) {
    const parts = chips.get(item.key);
    if (!parts) return;
    const { chip, icon, name, meta, bar, remove } = parts;
    chip.dataset.uploadStatus = item.held ? 'sending' : item.status;
    chip.dataset.uploadKind = item.kind;
    if (item.attachment) chip.dataset.uploadId = item.attachment.id;
    name.textContent = item.name;
    const percent = item.size ? Math.floor((item.loaded / item.size) * 100) : 0;
    let said = formatSize(item.size);
    if (item.status === 'uploading') said += ` · ${percent}%`;
    if (item.status === 'error') said = item.error;
    meta.textContent = said;
    meta.classList.toggle('upload__meta--error', item.status === 'error');
    if (item.status === 'error') meta.setAttribute('role', 'alert');
    bar.hidden = item.status !== 'uploading';
    bar.value = item.size ? item.loaded / item.size : 0;
    remove.disabled = item.held;
    // An uploaded image shows itself: the server's copy, same origin (the page's CSP).
    const preview = item.kind === 'image' && item.attachment ? item.attachment.url : '';
    const iconKey = `${item.kind}:${preview}`;
    if (parts.iconKey !== iconKey) {
      parts.iconKey = iconKey;
      if (preview) {
        const image = el('img', 'upload__thumb');
        image.src = preview;
        image.alt = '';
        icon.replaceChildren(image);
      } else {
        icon.replaceChildren(fileIcon(item.kind));
      }
    }
  }

  function sync() {
    tray.hidden = list.items().length === 0;
    onChange();
  }

  function upload(item, file) {
    const { done, abort } = api.uploadAttachment(file, {
      onProgress(loaded) {
        list.progress(item.key, loaded);
        draw(item);
      },
    });
    aborts.set(item.key, abort);
    done.then(
      (attachment) => {
        list.uploaded(item.key, attachment);
        notices.announce(`${item.name} is attached.`);
      },
      (error) => {
        if (error?.name === 'AbortError') return;
        list.failed(item.key, uploadErrorText(error));
        notices.announce(`${item.name} could not be attached: ${item.error}`);
      },
    ).finally(() => {
      aborts.delete(item.key);
      draw(item);
      sync();
    });
  }

  function take(files) {
    for (const file of files) {
      const item = list.add(file, { maxBytes });
      buildChip(item);
      if (item.status === 'uploading') upload(item, file);
      else notices.announce(`${item.name} could not be attached: ${item.error}`);
    }
    sync();
  }

  // Remove: stop an upload, or delete an uploaded file the server would otherwise keep a day.
  function drop(key) {
    const item = list.remove(key);
    if (!item) return;
    aborts.get(key)?.();
    if (item.attachment) {
      api.deleteAttachment(item.attachment.id).catch(() => {
        // Never sent, it is swept after a day anyway; nothing the user must act on.
      });
    }
    chips.get(key)?.chip.remove();
    chips.delete(key);
    sync();
    form.querySelector('textarea')?.focus();
  }

  attach.addEventListener('click', () => input.click());
  input.addEventListener('change', () => {
    take([...input.files]);
    // The same file picked again is a new attachment, not "no change".
    input.value = '';
  });

  // Only drags that carry files are ours: dragged text goes on into the textarea.
  const carriesFiles = (event) => [...(event.dataTransfer?.types ?? [])].includes('Files');
  zone.addEventListener('dragover', (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
    zone.dataset.dropping = 'true';
  });
  zone.addEventListener('dragleave', (event) => {
    if (!zone.contains(event.relatedTarget)) delete zone.dataset.dropping;
  });
  zone.addEventListener('drop', (event) => {
    delete zone.dataset.dropping;
    if (!carriesFiles(event)) return;
    event.preventDefault();
    take([...event.dataTransfer.files]);
  });
  // A file dropped just beside the zone would make the browser leave the page to show it.
  for (const type of ['dragover', 'drop']) {
    globalThis.addEventListener?.(type, (event) => {
      if (carriesFiles(event) && !zone.contains(event.target)) event.preventDefault();
    });
  }

  // A pasted screenshot or copied image comes as files and no text. Copied cells or a
  // document carry text too (and often a picture of it): that pastes as text.
  form.addEventListener('paste', (event) => {
    const data = event.clipboardData;
    const files = [...(data?.files ?? [])];
    if (!files.length || [...data.types].includes('text/plain')) return;
    event.preventDefault();
    take(files);
  });

  return {
    ready: () => list.ready(),
    uploading: () => list.uploading(),
    hasImage: () => list.hasImage(),
    hold(ids) {
      list.hold(ids);
      for (const item of list.items()) draw(item);
    },
    release(ids) {
      list.release(ids);
      for (const item of list.items()) draw(item);
      onChange();
    },
    sent(ids) {
      for (const item of list.sent(ids)) {
        chips.get(item.key)?.chip.remove();
        chips.delete(item.key);
      }
      sync();
    },
    take,
  };
}
