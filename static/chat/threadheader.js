/**
 * The top bar of the open thread: its title (also the document's), the model picker (or,
 * with one model, the model's name), the offline demo banner, the export menu's links, and
 * Share, which opens the share dialog (sharedialog.js) on the open thread.
 * What a choice of model does is the thread view's (threadview.js): the picker only shows
 * a model and reports the user's choice.
 */
import * as api from './api.js';
import { el } from './dom.js';
import { optionLabel } from './models.js';
import { createShareDialog } from './sharedialog.js';

/**
 * Wire the header under `root`.
 * @param {ParentNode} root
 * @param {object} options
 * @param {(threadId: string|null) => string|undefined} options.titleOf  a thread's title as
 *   the sidebar knows it
 * @param {import('./models.js').ModelCatalog} options.models
 * @param {(modelId: string) => void} options.onPick  the user picked a model
 * @returns {{sync(threadId: string|null): void, showProvider(provider?: object): void,
 *   showModel(modelId: string|null): void, closeMenu(): void}}
 */
export function createThreadHeader(root, { titleOf, models, onPick }) {
  const $ = (selector) => root.querySelector(selector);
  const ui = {
    title: $('[data-thread-title]'),
    provider: $('[data-provider]'),
    banner: $('[data-demo-banner]'),
    exportMenu: $('[data-export-menu]'),
    field: $('[data-model-field]'),
    picker: $('[data-model-picker]'),
    share: $('[data-action="share"]'),
  };
  const shareDialog = ui.share ? createShareDialog(root) : null;
  let openThread = null;
  // The embedded provider (the default model), for when the page has no model list.
  let provider = {};
  // An option for a model the user may no longer use, made when a thread still names one.
  let stray = null;

  function buildOptions() {
    const option = (m) => {
      const node = el('option', '', optionLabel(m));
      node.value = m.id;
      if (m.label && m.label !== m.id) node.title = m.id;
      return node;
    };
    if (!models.providers) {
      ui.picker.replaceChildren(...models.list.map(option));
      return;
    }
    // Several providers: one group each, so two models of the same name stay apart.
    const groups = new Map();
    for (const m of models.list) {
      if (!groups.has(m.provider)) groups.set(m.provider, el('optgroup'));
      const group = groups.get(m.provider);
      group.label = m.provider;
      group.append(option(m));
    }
    ui.picker.replaceChildren(...groups.values());
  }

  function showProvider() {
    const { name, model, offlineDemo } = provider;
    ui.provider.hidden = false;
    ui.provider.textContent = model ? `${model} (${name})` : name ?? '';
    ui.banner.hidden = !offlineDemo;
  }

  if (ui.picker) {
    buildOptions();
    // With one model there is nothing to choose: its name is shown instead (showModel).
    ui.field.hidden = !models.several;
    ui.picker.addEventListener('change', () => onPick(ui.picker.value));
  }
  ui.share?.addEventListener('click', () => {
    if (openThread) shareDialog.open(openThread);
  });

  return {
    /** Show the thread's title and export links (null: the empty page). */
    sync(threadId) {
      const title = titleOf(threadId)?.trim() || (threadId ? 'Untitled' : 'New chat');
      ui.title.textContent = title;
      document.title = threadId ? `${title} · Chat` : 'Chat';
      ui.exportMenu.hidden = !threadId;
      if (ui.share) ui.share.hidden = !threadId;
      if (threadId !== openThread) shareDialog?.close();
      openThread = threadId;
      if (threadId) {
        for (const link of ui.exportMenu.querySelectorAll('[data-export]')) link.href = api.exportUrl(threadId, link.dataset.export);
      }
    },
    /** The page's chat-config provider: `{name, model, offlineDemo}`, the default model's. */
    showProvider(given = {}) {
      provider = given;
      showProvider();
    },
    /**
     * Show the model the open thread (or the new chat) answers with: the picker's value, the
     * name beside the title with one model, and the offline demo banner when it is the demo.
     */
    showModel(modelId) {
      const model = models.get(modelId);
      if (!modelId || (!model && !models.list.length)) {
        // No model list (a broken configuration): the provider as the server named it.
        showProvider();
        return;
      }
      if (ui.picker && ui.picker.value !== modelId) {
        stray?.remove();
        stray = null;
        if (!model) {
          // Kept to other groups or removed by the operator: shown, not offered; the
          // thread's next reply uses the default (the server says which in a `thread` frame).
          stray = el('option', '', `${modelId} (not available)`);
          stray.value = modelId;
          stray.disabled = true;
          ui.picker.prepend(stray);
        }
        ui.picker.value = modelId;
      }
      ui.picker?.setAttribute('data-model', modelId);
      ui.provider.hidden = models.several;
      ui.provider.textContent = model ? `${model.label} (${model.provider})` : modelId;
      ui.banner.hidden = !(model ? model.offlineDemo : provider.offlineDemo);
    },
    closeMenu() {
      if (!ui.exportMenu.hidden) ui.exportMenu.open = false;
    },
  };
}
