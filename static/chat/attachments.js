/**
 * Files in the composer, without the DOM: what a size reads as, the courtesy checks before an
 * upload, what to say when one fails, and the list of files being attached (each uploading,
 * ready, refused, or held by a message on its way). The server decides what a file is and
 * whether it is taken (docs/protocol.md, "Attachments"); these checks only spare the user an
 * upload that is sure to be refused. uploadtray.js draws the list; message.js the files of a
 * sent message.
 *
 * @typedef {import('./protocol.js').Attachment} Attachment
 * @typedef {'uploading'|'ready'|'error'} UploadStatus
 * @typedef {object} Upload  one file in the composer
 * @property {number} key           the list's own id for it (it has no server id until uploaded)
 * @property {string} name
 * @property {number} size          bytes
 * @property {'image'|'text'|'document'} kind  the server's word once uploaded; a guess before
 * @property {UploadStatus} status
 * @property {number} loaded        bytes sent so far
 * @property {string|null} error    why it was refused (the server's message when it gave one)
 * @property {Attachment|null} attachment  the server's object, once uploaded
 * @property {boolean} held         sent with a message the server has not confirmed yet
 * @typedef {object} UploadList
 * @property {() => Upload[]} items          in the order they were added
 * @property {(key: number) => Upload|undefined} get
 * @property {(file: {name?: string, size: number, type?: string}, options?: {maxBytes?: number|null}) => Upload}
 *   add  a new file: `uploading`, or `error` when a courtesy check refuses it
 * @property {(key: number, loaded: number) => void} progress
 * @property {(key: number, attachment: Attachment) => void} uploaded
 * @property {(key: number, message: string) => void} failed
 * @property {(key: number) => Upload|undefined} remove
 * @property {() => Attachment[]} ready      what the next message carries (uploaded, not held)
 * @property {() => boolean} uploading       an upload runs: Send waits for it
 * @property {() => boolean} hasImage        an image is (being) attached
 * @property {(ids: string[]) => void} hold  these went with a message on its way
 * @property {(ids: string[]) => void} release  that message was refused: they stay to send again
 * @property {(ids: string[]) => Upload[]} sent  the server took them: gone from the list
 */

const UNITS = ['KB', 'MB', 'GB'];

/**
 * A file's size as people read it: `812 B`, `4.2 KB`, `13 MB` (units of 1024).
 * @param {number} bytes
 * @returns {string}
 */
export function formatSize(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return '';
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const shown = value < 10 ? value.toFixed(1).replace(/\.0$/, '') : String(Math.round(value));
  return `${shown} ${UNITS[unit]}`;
}

// Types no model here is given (docs/protocol.md, "Attachments"): refused at once rather than
// after the upload. Anything not listed goes to the server, which has the last word.
const REFUSED_TYPES = /^(video|audio)\/|^image\/(svg\+xml|heic|heif|tiff|bmp|x-icon)$/;
const REFUSED_EXTENSIONS = new Set([
  'svg', 'heic', 'heif', 'tif', 'tiff', 'bmp', 'ico',
  'mp3', 'wav', 'ogg', 'flac', 'm4a', 'mp4', 'mov', 'avi', 'mkv', 'webm',
  'zip', 'gz', 'tgz', 'bz2', 'xz', '7z', 'rar', 'tar', 'dmg', 'iso',
  'exe', 'dll', 'so', 'bin', 'msi', 'apk', 'deb', 'rpm',
  'doc', 'docx', 'xls', 'xlsx', 'ppt', 'pptx', 'odt', 'ods', 'odp', 'pages', 'key', 'numbers',
]);
const IMAGE_EXTENSIONS = new Set(['png', 'jpg', 'jpeg', 'gif', 'webp']);

function extensionOf(name) {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : '';
}

/**
 * What a file will likely be, before the server says: its `kind` for the chip's icon.
 * @param {{name?: string, type?: string}} file
 * @returns {'image'|'text'|'document'}
 */
export function guessKind({ name = '', type = '' }) {
  const extension = extensionOf(name);
  if (type.startsWith('image/') || IMAGE_EXTENSIONS.has(extension)) return 'image';
  if (type === 'application/pdf' || extension === 'pdf') return 'document';
  return 'text';
}

/**
 * The courtesy checks before an upload: an empty file, one over the size limit, a type no
 * model takes. A file that passes may still be refused by the server, which decides.
 * @param {{name?: string, size: number, type?: string}} file
 * @param {{maxBytes?: number|null}} [options] maxBytes: the server's MAX_UPLOAD_BYTES, if the
 *   page knows it
 * @returns {string|null} why the file is refused; null: upload it
 */
export function precheck({ name = 'file', size, type = '' }, { maxBytes = null } = {}) {
  if (size === 0) return `${name} is empty.`;
  if (maxBytes && size > maxBytes) return `${name} is ${formatSize(size)}: the limit is ${formatSize(maxBytes)}.`;
  if (REFUSED_TYPES.test(type) || REFUSED_EXTENSIONS.has(extensionOf(name))) {
    return `${name} can't be attached: images (PNG, JPEG, WebP, GIF), PDFs and text files can.`;
  }
  return null;
}

/**
 * What a chip says about a failed upload: the server's own message when it refused the file.
 * @param {Error & {status?: number}} error from api.js uploadAttachment
 * @returns {string}
 */
export function uploadErrorText(error) {
  const status = error?.status;
  if (status === 401 || status === 403) return 'Your session may have expired: reload the page to log in again.';
  if (status >= 500) return `The server failed (${status}); try again.`;
  if (status) return error.message || `Refused (${status}).`;
  return 'The upload did not get through: check the connection and try again.';
}

/**
 * The composer's list of files.
 * @returns {UploadList}
 */
export function createUploadList() {
  /** @type {Upload[]} */
  let items = [];
  let nextKey = 1;
  const get = (key) => items.find((item) => item.key === key);
  const byIds = (ids) => {
    const wanted = new Set(ids.map(String));
    return items.filter((item) => item.attachment && wanted.has(item.attachment.id));
  };

  return {
    items: () => items,
    get,
    add(file, { maxBytes = null } = {}) {
      const refused = precheck(file, { maxBytes });
      const item = {
        key: nextKey,
        name: file.name || 'file',
        size: file.size,
        kind: guessKind(file),
        status: refused ? 'error' : 'uploading',
        loaded: 0,
        error: refused,
        attachment: null,
        held: false,
      };
      nextKey += 1;
      items.push(item);
      return item;
    },
    progress(key, loaded) {
      const item = get(key);
      if (item?.status === 'uploading') item.loaded = Math.min(loaded, item.size);
    },
    uploaded(key, attachment) {
      const item = get(key);
      if (!item) return;
      item.status = 'ready';
      item.loaded = item.size;
      item.attachment = attachment;
      // The server's word on what the file is and what it is called.
      item.kind = attachment.kind ?? item.kind;
      item.name = attachment.name ?? item.name;
      item.size = attachment.size ?? item.size;
    },
    failed(key, message) {
      const item = get(key);
      if (!item) return;
      item.status = 'error';
      item.error = message;
    },
    remove(key) {
      const item = get(key);
      items = items.filter((other) => other.key !== key);
      return item;
    },
    ready: () => items.filter((item) => item.status === 'ready' && !item.held).map((item) => item.attachment),
    uploading: () => items.some((item) => item.status === 'uploading'),
    hasImage: () => items.some((item) => item.kind === 'image' && item.status !== 'error'),
    hold(ids) {
      for (const item of byIds(ids)) item.held = true;
    },
    release(ids) {
      for (const item of byIds(ids)) item.held = false;
    },
    sent(ids) {
      const gone = byIds(ids);
      items = items.filter((item) => !gone.includes(item));
      return gone;
    },
  };
}
