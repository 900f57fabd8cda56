/**
 * The one element builder the page's views share. Text is set as text, never as HTML.
 */

/**
 * A new element.
 * @param {string} tag
 * @param {string} [className]
 * @param {string} [text]   set as the element's text
 * @returns {HTMLElement}
 */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
