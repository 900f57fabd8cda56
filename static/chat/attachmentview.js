/**
 * Files on screen: a file's icon by kind, and a sent message's files (images as thumbnails
 * that open the full image in a new tab, other files as chips that download). Names are set
 * as text; URLs are the server's own `/api/attachments/<id>/content` (served `nosniff`, and
 * as a download unless an image).
 *
 * @typedef {import('./protocol.js').Attachment} Attachment
 */
import { formatSize } from './attachments.js';
import { el } from './dom.js';

// Feather's icons (MIT, feathericons.com): an icon reads at a glance where an emoji may render
// as a box.
const ICONS = {
  image: 'M5 3h14a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zM21 15l-5-5L5 21M8.5 10a1.5 1.5 0 1 0 0-3 1.5 1.5 0 0 0 0 3z',
  text: 'M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8zM14 2v6h6M16 13H8M16 17H8M10 9H8',
  document: 'M13 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V9zM13 2v7h7M8 17h1.5M11.5 17H16M8 13h8',
};
const KIND_LABELS = { image: 'Image', text: 'Text file', document: 'PDF' };
const SVG = 'http://www.w3.org/2000/svg';

/**
 * A file's icon (an inline SVG, hidden from screen readers: the name says what it is).
 * @param {'image'|'text'|'document'} kind
 * @returns {SVGSVGElement}
 */
export function fileIcon(kind) {
  const icon = document.createElementNS(SVG, 'svg');
  icon.setAttribute('viewBox', '0 0 24 24');
  icon.setAttribute('aria-hidden', 'true');
  icon.setAttribute('focusable', 'false');
  icon.setAttribute('class', `file-icon file-icon--${kind}`);
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', ICONS[kind] ?? ICONS.text);
  icon.append(path);
  return icon;
}

function thumbnail(file) {
  const link = el('a', 'attachment-image');
  link.href = file.url;
  link.target = '_blank';
  link.rel = 'noopener';
  link.title = `${file.name} (${formatSize(file.size)}): open the full image`;
  link.dataset.attachmentId = file.id;
  link.dataset.attachmentKind = 'image';
  const image = el('img', 'attachment-image__img');
  image.src = file.url;
  image.alt = file.name;
  image.loading = 'lazy';
  image.decoding = 'async';
  link.append(image);
  return link;
}

function chip(file) {
  const link = el('a', `attachment attachment--${file.kind}`);
  link.href = file.url;
  // The server sends it as a download anyway (Content-Disposition); this keeps the name.
  link.download = file.name;
  link.title = `Download ${file.name}`;
  link.dataset.attachmentId = file.id;
  link.dataset.attachmentKind = file.kind;
  const text = el('span', 'attachment__text');
  text.append(el('span', 'attachment__name', file.name), el('span', 'attachment__meta', `${KIND_LABELS[file.kind] ?? 'File'} · ${formatSize(file.size)}`));
  link.append(fileIcon(file.kind), text);
  return link;
}

/**
 * A message's files, images first (as thumbnails), then the rest (as chips).
 * @param {Attachment[]} files
 * @returns {HTMLElement[]}
 */
export function buildAttachments(files) {
  const images = files.filter((file) => file.kind === 'image').map(thumbnail);
  const others = files.filter((file) => file.kind !== 'image').map(chip);
  return [...images, ...others];
}
