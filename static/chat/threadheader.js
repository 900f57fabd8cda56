/**
 * The top bar of the open thread: its title (also the document's), the model that answers,
 * the offline demo banner, and the export menu's links.
 */
import * as api from './api.js';

/**
 * Wire the header under `root`.
 * @param {ParentNode} root
 * @param {{titleOf: (threadId: string|null) => string|undefined}} options  a thread's title as
 *   the sidebar knows it
 * @returns {{sync(threadId: string|null): void, showProvider(provider?: object): void,
 *   closeMenu(): void}}
 */
export function createThreadHeader(root, { titleOf }) {
  const $ = (selector) => root.querySelector(selector);
  const ui = {
    title: $('[data-thread-title]'),
    provider: $('[data-provider]'),
    banner: $('[data-demo-banner]'),
    exportMenu: $('[data-export-menu]'),
  };

  return {
    /** Show the thread's title and export links (null: the empty page). */
    sync(threadId) {
      const title = titleOf(threadId)?.trim() || (threadId ? 'Untitled' : 'New chat');
      ui.title.textContent = title;
      document.title = threadId ? `${title} · Chat` : 'Chat';
      ui.exportMenu.hidden = !threadId;
      if (threadId) {
        for (const link of ui.exportMenu.querySelectorAll('[data-export]')) link.href = api.exportUrl(threadId, link.dataset.export);
      }
    },
    /** The page's chat-config provider: `{name, model, offlineDemo}`. */
    showProvider({ name, model, offlineDemo } = {}) {
      ui.provider.textContent = model ? `${model} (${name})` : name ?? '';
      ui.banner.hidden = !offlineDemo;
    },
    closeMenu() {
      if (!ui.exportMenu.hidden) ui.exportMenu.open = false;
    },
  };
}
