/**
 * The page's theme: light or dark, written as the document's `data-theme` (the resolved
 * theme: `light` | `dark`) before the page paints, so a dark page never flashes white.
 *
 * A classic script, loaded (blocking) in <head> of every page: a module would run after the
 * first paint. What decides the theme, first that says:
 *   1. this browser's own choice (the toggle, `[data-action="toggle-theme"]`; localStorage);
 *   2. the account's choice, if the server wrote one as `<html data-theme-choice>`
 *      (`light` | `dark` | `system`);
 *   3. the system setting (prefers-color-scheme), followed live.
 * Toggling back to what 2 and 3 would give forgets the browser's choice, so the page follows
 * the account and the system again. Stylesheets marked `data-theme-sheet="light|dark"` (the
 * code highlighting's) are on only in their theme.
 *
 * It also hides the offline-demo notice the user dismissed (`data-demo-dismissed`) before it
 * paints: a notice that shows and then goes would shift the page.
 * `globalThis.chatTheme` holds the pure rules (`resolveTheme`, `nextChoice`) for tests and
 * `toggle()` for automation.
 */
(function themeBoot() {
  const KEY = 'chat-theme';
  const CHOICES = ['light', 'dark', 'system'];
  const root = document.documentElement;
  const media = typeof matchMedia === 'function' ? matchMedia('(prefers-color-scheme: dark)') : null;

  /**
   * The theme a choice gives.
   * @param {string|null|undefined} choice light | dark | system (anything else: system)
   * @param {boolean} systemDark the system prefers dark
   * @returns {'light'|'dark'}
   */
  function resolveTheme(choice, systemDark) {
    if (choice === 'light' || choice === 'dark') return choice;
    return systemDark ? 'dark' : 'light';
  }

  /**
   * What the toggle stores: the other theme, or null (forget this browser's choice) when
   * the other theme is what the account's choice and the system give anyway.
   * @param {'light'|'dark'} current the theme shown
   * @param {'light'|'dark'} fallback the theme without a choice in this browser
   * @returns {'light'|'dark'|null}
   */
  function nextChoice(current, fallback) {
    const next = current === 'dark' ? 'light' : 'dark';
    return next === fallback ? null : next;
  }

  // Storage can be disabled (privacy modes): the theme then lasts for the page's life.
  let memory = null;
  function stored() {
    try {
      return localStorage.getItem(KEY);
    } catch {
      return memory;
    }
  }
  function store(choice) {
    memory = choice;
    try {
      if (choice) localStorage.setItem(KEY, choice);
      else localStorage.removeItem(KEY);
    } catch {
      // See above.
    }
  }

  const systemDark = () => Boolean(media && media.matches);
  const accountChoice = () => (CHOICES.includes(root.dataset.themeChoice) ? root.dataset.themeChoice : 'system');
  const fallback = () => resolveTheme(accountChoice(), systemDark());

  function apply() {
    const local = stored();
    const theme = local === 'light' || local === 'dark' ? local : fallback();
    if (root.dataset.theme !== theme) root.dataset.theme = theme;
    for (const sheet of document.querySelectorAll('link[data-theme-sheet]')) {
      sheet.media = sheet.dataset.themeSheet === theme ? 'all' : 'not all';
    }
    const dark = String(theme === 'dark');
    for (const button of document.querySelectorAll('[data-action="toggle-theme"]')) {
      if (button.getAttribute('aria-pressed') !== dark) button.setAttribute('aria-pressed', dark);
      button.title = theme === 'dark' ? 'Switch to the light theme' : 'Switch to the dark theme';
    }
    return theme;
  }

  function toggle() {
    store(nextChoice(apply(), fallback()));
    return apply();
  }

  apply();
  // The offline-demo notice, once dismissed (notices.js), is hidden before it could paint.
  try {
    if (localStorage.getItem('chat-demo-notice-dismissed')) root.dataset.demoDismissed = 'true';
  } catch {
    // Storage disabled: notices.js shows the notice.
  }
  media?.addEventListener?.('change', apply);
  // Another tab toggled.
  addEventListener('storage', (event) => {
    if (event.key === KEY || event.key === null) apply();
  });
  // The toggles are in the body, parsed after this runs: their state once they exist, and
  // one listener for every toggle the page has or will have.
  document.addEventListener('DOMContentLoaded', apply);
  document.addEventListener('click', (event) => {
    if (event.target.closest?.('[data-action="toggle-theme"]')) toggle();
  });

  globalThis.chatTheme = { resolveTheme, nextChoice, toggle, apply };
})();
