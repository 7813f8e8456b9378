// Reading radflow's audit records back as a repository and a FHIR consumer would: RFC 5424
// syslog messages (as the RFC 5425 receiver decoded them) carrying a DICOM PS3.15 AuditMessage,
// and FHIR R4 AuditEvents from JSON. Both become one neutral view, so a test can say that the two
// sinks hold the same facts. The XML reader only handles what radflow writes (one document,
// elements, double-quoted attributes, text); it is not a general XML parser.

export interface SyslogMessage {
  pri: number;
  version: number;
  timestamp: string;
  hostname: string;
  appName: string;
  procId: string;
  msgId: string;
  structuredData: string;
  /** MSG started with the UTF-8 BOM, as RFC 5424 requires for UTF-8 text */
  bom: boolean;
  msg: string;
}

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** One syslog message (the frame's payload, without MSG-LEN). Throws on a malformed header. */
export function parseSyslog(frame: Buffer): SyslogMessage {
  // HEADER: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
  const head = /^<(\d{1,3})>(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[.*?\]) ?/s.exec(
    frame.subarray(0, 2048).toString("latin1"),
  );
  if (!head) throw new Error(`not an RFC 5424 message: ${frame.subarray(0, 120).toString("latin1")}`);
  let rest = frame.subarray(Buffer.byteLength(head[0], "latin1"));
  const bom = rest.subarray(0, 3).equals(BOM);
  if (bom) rest = rest.subarray(3);
  const [, pri, version, timestamp, hostname, appName, procId, msgId, sd] = head as unknown as string[];
  return {
    pri: Number(pri),
    version: Number(version),
    timestamp: timestamp as string,
    hostname: hostname as string,
    appName: appName as string,
    procId: procId as string,
    msgId: msgId as string,
    structuredData: sd as string,
    bom,
    msg: rest.toString("utf8"),
  };
}

export interface XmlNode {
  name: string;
  attrs: Record<string, string>;
  children: XmlNode[];
  text: string;
}

const xmlUnescape = (s: string) =>
  s.replace(/&(lt|gt|quot|apos|amp|#(\d+)|#x([0-9a-f]+));/gi, (_m, name: string, dec?: string, hex?: string) => {
    if (dec) return String.fromCodePoint(Number(dec));
    if (hex) return String.fromCodePoint(Number.parseInt(hex, 16));
    return { lt: "<", gt: ">", quot: '"', apos: "'", amp: "&" }[name.toLowerCase()] as string;
  });

/** Parses the document radflow's serializer writes; throws on anything not well-formed. */
export function parseXml(xml: string): XmlNode {
  const body = xml.replace(/^<\?xml[^?]*\?>/, "");
  const token = /<(\/?)([A-Za-z_][\w.-]*)((?:\s+[\w:.-]+="[^"]*")*)\s*(\/?)>|([^<]+)/gy;
  const root: XmlNode = { name: "#document", attrs: {}, children: [], text: "" };
  const stack: XmlNode[] = [root];
  let m: RegExpExecArray | null;
  let at = 0;
  // biome-ignore lint/suspicious/noAssignInExpressions: a tokenizer loop
  while ((m = token.exec(body))) {
    at = token.lastIndex;
    const [, close, name, attrText, selfClose, text] = m;
    const top = stack.at(-1) as XmlNode;
    if (text !== undefined) {
      top.text += xmlUnescape(text);
      continue;
    }
    if (close) {
      if (top.name !== name) throw new Error(`XML: </${name}> closes <${top.name}>`);
      stack.pop();
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const a of (attrText ?? "").matchAll(/([\w:.-]+)="([^"]*)"/g))
      attrs[a[1] as string] = xmlUnescape(a[2] as string);
    const node: XmlNode = { name: name as string, attrs, children: [], text: "" };
    top.children.push(node);
    if (!selfClose) stack.push(node);
  }
  if (at !== body.length) throw new Error(`XML: cannot read from offset ${at}: ${body.slice(at, at + 60)}`);
  if (stack.length !== 1) throw new Error(`XML: <${stack.at(-1)?.name}> is not closed`);
  if (root.children.length !== 1) throw new Error("XML: expected one root element");
  return root.children[0] as XmlNode;
}

const kids = (n: XmlNode, name: string) => n.children.filter((c) => c.name === name);
const kid = (n: XmlNode, name: string) => kids(n, name)[0];

/** What a test compares between the two sinks: the fact, as each rendering tells it. */
export interface AuditView {
  kind: string;
  /** EventID code (DICOM) / AuditEvent.type code (FHIR); also the syslog MSGID */
  eventId: string;
  /** process ID of the radflow replica that recorded it (the application participant's alternative ID) */
  reporter?: string;
  time: string;
  outcome: string;
  description?: string;
  /** `<namespace>/<task>` or `<namespace>/<workflow>` */
  object?: string;
  step?: string;
  study?: string;
  accession?: string;
}

/** The fact kind from the codes radflow's default table uses (RADFLOW subtype/event id, DCM start/stop). */
function kindOf(eventId: { code: string; system: string }, types: { code: string; system: string }[]): string {
  const own = types.find((t) => t.system === "RADFLOW" || t.system === "urn:radflow:audit");
  if (own) return own.code;
  if (eventId.system === "RADFLOW" || eventId.system === "urn:radflow:audit") return eventId.code;
  if (types.some((t) => t.code === "110120")) return "OperatorStarted";
  if (types.some((t) => t.code === "110121")) return "OperatorStopped";
  return `${eventId.system}:${eventId.code}`;
}

/** A DICOM AuditMessage as an AuditView. */
export function viewOfAuditMessage(xml: string): AuditView {
  const doc = parseXml(xml);
  if (doc.name !== "AuditMessage") throw new Error(`root element ${doc.name}, not AuditMessage`);
  const ev = kid(doc, "EventIdentification");
  if (!ev) throw new Error("no EventIdentification");
  const id = kid(ev, "EventID");
  const code = (n: XmlNode) => ({ code: n.attrs["csd-code"] ?? "", system: n.attrs.codeSystemName ?? "" });
  const view: AuditView = {
    kind: kindOf(code(id as XmlNode), kids(ev, "EventTypeCode").map(code)),
    eventId: id?.attrs["csd-code"] ?? "",
    time: ev.attrs.EventDateTime ?? "",
    outcome: ev.attrs.EventOutcomeIndicator ?? "",
  };
  const desc = kid(ev, "EventOutcomeDescription");
  if (desc) view.description = desc.text;
  const app = kids(doc, "ActiveParticipant").find((p) =>
    kids(p, "RoleIDCode").some((r) => r.attrs["csd-code"] === "110150"),
  );
  if (app?.attrs.AlternativeUserID) view.reporter = app.attrs.AlternativeUserID;
  for (const o of kids(doc, "ParticipantObjectIdentification")) {
    const role = o.attrs.ParticipantObjectTypeCodeRole;
    const oid = o.attrs.ParticipantObjectID ?? "";
    if (role === "3") {
      view.study = oid;
      const acc = kid(kid(o, "ParticipantObjectDescription") ?? o, "Accession");
      if (acc) view.accession = acc.attrs.Number;
    } else if (role === "20" || role === "5") {
      view.object = oid;
      const step = kids(o, "ParticipantObjectDetail").find((d) => d.attrs.type === "Step");
      if (step) view.step = Buffer.from(step.attrs.value ?? "", "base64").toString("utf8");
    }
  }
  return view;
}

interface FhirCoding {
  system?: string;
  code?: string;
}
interface FhirEntity {
  what?: { identifier?: { value?: string } };
  role?: FhirCoding;
  detail?: { type: string; valueString?: string }[];
  extension?: { url: string; valueIdentifier?: { value?: string } }[];
}
export interface FhirAuditEventLike {
  resourceType: string;
  type: FhirCoding;
  subtype?: FhirCoding[];
  recorded: string;
  outcome: string;
  outcomeDesc?: string;
  agent?: { type?: { coding?: FhirCoding[] }; altId?: string }[];
  entity?: FhirEntity[];
}

/** A FHIR AuditEvent as an AuditView. */
export function viewOfFhirAuditEvent(e: FhirAuditEventLike): AuditView {
  if (e.resourceType !== "AuditEvent") throw new Error(`resourceType ${e.resourceType}`);
  const sys = (c: FhirCoding) => ({ code: c.code ?? "", system: c.system ?? "" });
  const view: AuditView = {
    kind: kindOf(sys(e.type), (e.subtype ?? []).map(sys)),
    eventId: e.type.code ?? "",
    time: e.recorded,
    outcome: e.outcome,
  };
  if (e.outcomeDesc !== undefined) view.description = e.outcomeDesc;
  const app = e.agent?.find((a) => a.type?.coding?.some((c) => c.code === "110150"));
  if (app?.altId) view.reporter = app.altId;
  for (const en of e.entity ?? []) {
    const role = en.role?.code;
    const value = en.what?.identifier?.value ?? "";
    if (role === "3") {
      view.study = value.replace(/^urn:oid:/, "");
      const acc = en.extension?.find((x) => x.url.endsWith("auditevent-Accession"));
      if (acc?.valueIdentifier?.value) view.accession = acc.valueIdentifier.value;
    } else if (role === "20" || role === "5") {
      view.object = value;
      const step = en.detail?.find((d) => d.type === "Step");
      if (step?.valueString !== undefined) view.step = step.valueString;
    }
  }
  return view;
}

/** A string that is equal for the same fact in either rendering. */
export function auditKey(v: AuditView): string {
  return JSON.stringify([
    v.kind,
    v.eventId,
    v.reporter ?? "",
    v.time,
    v.outcome,
    v.object ?? "",
    v.step ?? "",
    v.study ?? "",
    v.accession ?? "",
    v.description ?? "",
  ]);
}
