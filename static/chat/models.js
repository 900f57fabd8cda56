/**
 * The models this user may pick, as the page embeds them (`chat-config` `models`, the same
 * list as `GET /api/models/`), and the one a new thread takes. DOM-free: the picker
 * (threadheader.js) and the replies' labels (message.js) both read it.
 *
 * @typedef {{id: string, label: string, provider: string, default: boolean, vision: boolean,
 *   offlineDemo?: boolean}} ModelInfo
 * @typedef {object} ModelCatalog
 * @property {readonly ModelInfo[]} list     oldest configured first
 * @property {(id: string|null|undefined) => ModelInfo|undefined} get
 * @property {(id: string|null|undefined) => string} label  its label; an id the user may not
 *   use (removed, or kept to other groups) is shown as it is
 * @property {() => string|null} preferred   the model a new thread takes
 * @property {(id: string) => void} prefer   the user chose `id` (the server keeps it too)
 * @property {boolean} several               more than one model: worth a picker
 * @property {boolean} providers             the models come from more than one provider
 */

/**
 * The catalog of the page's models.
 * @param {ModelInfo[]} models
 * @param {string|null} [preferredModel] the server's choice for a new thread
 * @returns {ModelCatalog}
 */
export function createModelCatalog(models = [], preferredModel = null) {
  const list = Object.freeze(models.map((m) => Object.freeze({ ...m })));
  const byId = new Map(list.map((m) => [m.id, m]));
  const fallback = () => list.find((m) => m.default)?.id ?? list[0]?.id ?? null;
  let preferred = byId.has(preferredModel) ? preferredModel : fallback();
  return {
    list,
    get: (id) => byId.get(id),
    label: (id) => byId.get(id)?.label || id || '',
    preferred: () => preferred,
    prefer(id) {
      if (byId.has(id)) preferred = id;
    },
    several: list.length > 1,
    providers: new Set(list.map((m) => m.provider)).size > 1,
  };
}

/**
 * What an option of the picker says: the label, and whether it is the offline demo (unless
 * the label says so already).
 * @param {ModelInfo} model
 * @returns {string}
 */
export function optionLabel(model) {
  const label = model.label || model.id;
  return model.offlineDemo && !/offline demo/i.test(label) ? `${label} (offline demo)` : label;
}
