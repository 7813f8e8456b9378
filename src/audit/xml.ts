// A minimal XML serializer for the audit messages: elements, attributes, text, escaping. The
// AuditMessage is small and fixed in shape, so a dependency would add more than it saves.

export type XmlAttrs = Record<string, string | number | boolean | undefined>;
export interface XmlElement {
  name: string;
  attrs: XmlAttrs;
  children: (XmlElement | string)[];
}

/** An element; attributes whose value is undefined are left out. */
export function el(name: string, attrs: XmlAttrs = {}, ...children: (XmlElement | string | undefined | false)[]) {
  return {
    name,
    attrs,
    children: children.filter((c): c is XmlElement | string => c !== undefined && c !== false),
  };
}

// XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]. Anything
// else (control characters, lone surrogates, U+FFFE/U+FFFF) cannot appear even escaped, so it
// becomes U+FFFD rather than making the whole record unparseable.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching those characters is the point
const NOT_XML_CHAR = /[^\x09\x0A\x0D\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

export function escapeText(s: string): string {
  return s.replace(NOT_XML_CHAR, "\uFFFD").replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Attribute values also escape quotes and keep tab/newline/CR (attribute normalization would eat them). */
export function escapeAttr(s: string): string {
  return escapeText(s).replace(/"/g, "&quot;").replace(/\t/g, "&#9;").replace(/\n/g, "&#10;").replace(/\r/g, "&#13;");
}

function write(e: XmlElement, out: string[]) {
  out.push("<", e.name);
  for (const [k, v] of Object.entries(e.attrs)) {
    if (v === undefined) continue;
    out.push(" ", k, '="', escapeAttr(String(v)), '"');
  }
  if (e.children.length === 0) {
    out.push("/>");
    return;
  }
  out.push(">");
  for (const c of e.children) {
    if (typeof c === "string") out.push(escapeText(c));
    else write(c, out);
  }
  out.push("</", e.name, ">");
}

/** The document as one line, with an XML declaration. */
export function serializeXml(root: XmlElement): string {
  const out = ['<?xml version="1.0" encoding="UTF-8"?>'];
  write(root, out);
  return out.join("");
}
