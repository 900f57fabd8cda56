/**
 * `/chatkit/`: OpenAI's ChatKit web component on this server's ChatKit endpoint.
 *
 * The component loads from OpenAI's CDN in the user's browser (the server never fetches it).
 * Its requests go to `/api/chatkit` with `Authorization: Bearer <client secret>`, the secret
 * from `POST /api/chatkit/session` (this page's session pays for it), renewed before it
 * expires and once more if the server says it has (401). With CHATKIT_WORKFLOW_ID set, the
 * operator chose OpenAI's hosted workflow: the component gets that session's secret instead.
 */

import { csrfToken } from './api.js';

const config = JSON.parse(document.getElementById('chatkit-config').textContent);
const status = document.querySelector('[data-chatkit-status]');
const RENEW_BEFORE_MS = 30_000;
const LOAD_TIMEOUT_MS = 15_000;

let secret = null; // {value, expiresAt (epoch seconds)}

/** A client secret with some life left in it, asking the server for a new one if needed. */
export async function clientSecret({ fresh = false } = {}) {
  if (!fresh && secret && secret.expiresAt * 1000 - Date.now() > RENEW_BEFORE_MS) return secret.value;
  const response = await fetch(config.session, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'X-CSRFToken': csrfToken() },
  });
  if (!response.ok) throw new Error(`No client secret: HTTP ${response.status}`);
  const body = await response.json();
  secret = { value: body.client_secret, expiresAt: body.expires_at };
  return secret.value;
}

/** The request's JSON with the browser's time zone in its metadata (for the agent's
 * `current_time` tool), as the chat page sends it; any other body as it is. */
export function withTimeZone(body) {
  if (typeof body !== 'string') return body;
  try {
    const request = JSON.parse(body);
    const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!request || typeof request !== 'object' || !timeZone) return body;
    request.metadata = { time_zone: timeZone, ...request.metadata };
    return JSON.stringify(request);
  } catch {
    return body;
  }
}

/** ChatKit's `api.fetch`: its request, authorized by the client secret. */
export async function authorizedFetch(url, init = {}) {
  const body = withTimeZone(init.body);
  const send = async (fresh) => {
    const headers = new Headers(init.headers);
    headers.set('Authorization', `Bearer ${await clientSecret({ fresh })}`);
    return fetch(url, { ...init, body, headers, credentials: 'omit' });
  };
  const response = await send(false);
  return response.status === 401 ? send(true) : response;
}

function options() {
  if (config.hosted) {
    return { api: { getClientSecret: (current) => clientSecret({ fresh: Boolean(current) }) } };
  }
  return {
    api: {
      url: config.api,
      domainKey: config.domainKey,
      fetch: authorizedFetch,
      // `attachments.create` answers with our upload URL; the file is posted there.
      uploadStrategy: { type: 'two_phase' },
    },
    history: { enabled: true, showDelete: true, showRename: true },
    threadItemActions: { retry: true, feedback: true },
    startScreen: { greeting: 'What can I help with?' },
    composer: {
      placeholder: 'Message the assistant…',
      models: composerModels(),
      attachments: composerAttachments(),
    },
  };
}

/** What ChatKit's composer may attach: what the server takes (the server checks the bytes
 * whatever the browser says), at most MAX_ATTACHMENTS files of MAX_UPLOAD_BYTES each. */
export function composerAttachments({
  maxCount = config.maxAttachments ?? 10,
  maxSize = config.maxUploadBytes ?? 10 * 1024 * 1024,
} = {}) {
  return {
    enabled: true,
    maxCount,
    maxSize,
    accept: {
      'image/png': ['.png'],
      'image/jpeg': ['.jpg', '.jpeg'],
      'image/webp': ['.webp'],
      'image/gif': ['.gif'],
      'application/pdf': ['.pdf'],
      'application/json': ['.json'],
      'text/*': ['.txt', '.md', '.markdown', '.csv', '.tsv', '.log', '.py', '.js', '.ts', '.html',
        '.css', '.xml', '.yaml', '.yml', '.toml', '.ini', '.sh', '.sql', '.c', '.h', '.cpp',
        '.java', '.go', '.rs', '.rb'],
    },
  };
}

/** The models this user may pick, for ChatKit's composer (its choice reaches the server as
 * `inference_options.model`); the one a new thread takes is the default. */
export function composerModels(models = config.models ?? [], preferred = config.preferredModel) {
  return models.map((model) => ({
    id: model.id,
    label: model.label,
    description: model.offlineDemo ? 'Offline demo model, runs on this machine' : model.provider,
    default: model.id === (preferred || models.find((m) => m.default)?.id),
  }));
}

function say(text) {
  status.textContent = text;
  status.hidden = !text;
}

function unreachable() {
  say(
    "ChatKit's web component could not be loaded from OpenAI's CDN (cdn.platform.openai.com). " +
      'This page needs that browser to reach it; the chat page works without it.',
  );
}

async function mount() {
  const script = document.createElement('script');
  script.src = config.script;
  script.async = true;
  script.addEventListener('error', unreachable);
  document.head.append(script);
  const timer = setTimeout(unreachable, LOAD_TIMEOUT_MS);
  await customElements.whenDefined('openai-chatkit');
  clearTimeout(timer);
  document.querySelector('[data-chatkit]').setOptions(options());
  say('');
}

mount();
