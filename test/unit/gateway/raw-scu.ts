// A bare C-STORE SCU that sends whatever bytes it is given as the data set. dcmtk's storescu
// (rightly) refuses to send a truncated or non-DICOM file, so the gateway's answer to such a data
// set arriving over DIMSE is tested with this: association request, one C-STORE, release.
import net from "node:net";

const pad = (s: string, n: number) => Buffer.from(s.padEnd(n, " ").slice(0, n), "latin1");
const uid = (s: string) => {
  const b = Buffer.from(s, "latin1");
  return b.length % 2 ? Buffer.concat([b, Buffer.from([0])]) : b;
};
function item(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt8(type, 0);
  h.writeUInt16BE(body.length, 2);
  return Buffer.concat([h, body]);
}
function pdu(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(6);
  h.writeUInt8(type, 0);
  h.writeUInt32BE(body.length, 2);
  return Buffer.concat([h, body]);
}
/** Implicit VR Little Endian element (the command set's encoding). */
function el(group: number, element: number, value: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(group, 0);
  h.writeUInt16LE(element, 2);
  h.writeUInt32LE(value.length, 4);
  return Buffer.concat([h, value]);
}
const us = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n, 0);
  return b;
};
function pdv(pcid: number, control: number, data: Buffer): Buffer {
  const h = Buffer.alloc(6);
  h.writeUInt32BE(data.length + 2, 0);
  h.writeUInt8(pcid, 4);
  h.writeUInt8(control, 5);
  return Buffer.concat([h, data]);
}

export interface RawStore {
  host: string;
  port: number;
  calling: string;
  called: string;
  sopClassUID: string;
  sopInstanceUID: string;
  transferSyntaxUID: string;
  dataset: Buffer;
}

/** Sends one C-STORE; resolves with the response's status, or "rejected"/"aborted". */
export function rawCStore(o: RawStore): Promise<number | "rejected" | "aborted"> {
  const rq = Buffer.concat([
    Buffer.from([0, 1, 0, 0]),
    pad(o.called, 16),
    pad(o.calling, 16),
    Buffer.alloc(32),
    item(0x10, Buffer.from("1.2.840.10008.3.1.1.1")),
    item(
      0x20,
      Buffer.concat([
        Buffer.from([1, 0, 0, 0]),
        item(0x30, Buffer.from(o.sopClassUID)),
        item(0x40, Buffer.from(o.transferSyntaxUID)),
      ]),
    ),
    item(0x50, Buffer.concat([item(0x51, Buffer.from([0, 1, 0, 0])), item(0x52, Buffer.from("2.25.1234567890"))])),
  ]);
  const fields = Buffer.concat([
    el(0, 0x0002, uid(o.sopClassUID)),
    el(0, 0x0100, us(0x0001)),
    el(0, 0x0110, us(1)),
    el(0, 0x0700, us(0)),
    el(0, 0x0800, us(0)),
    el(0, 0x1000, uid(o.sopInstanceUID)),
  ]);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(fields.length, 0);
  const command = Buffer.concat([el(0, 0, len), fields]);

  return new Promise((resolve, reject) => {
    const sock = net.connect(o.port, o.host);
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (v: number | "rejected" | "aborted") => {
      if (done) return;
      done = true;
      resolve(v);
      sock.end(pdu(5, Buffer.alloc(4)));
      setTimeout(() => sock.destroy(), 200);
    };
    sock.on("error", (e) => (done ? undefined : reject(e)));
    sock.on("close", () => finish("aborted"));
    sock.on("connect", () => sock.write(pdu(1, rq)));
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 6 && buf.length >= 6 + buf.readUInt32BE(2)) {
        const type = buf[0];
        const body = buf.subarray(6, 6 + buf.readUInt32BE(2));
        buf = buf.subarray(6 + body.length);
        if (type === 2) {
          // accepted: the command, then the data set in 16 KiB fragments, the last one marked
          sock.write(pdu(4, pdv(1, 0x03, command)));
          for (let off = 0; off < o.dataset.length || off === 0; off += 16_384) {
            const last = off + 16_384 >= o.dataset.length;
            sock.write(pdu(4, pdv(1, last ? 0x02 : 0x00, o.dataset.subarray(off, off + 16_384))));
            if (last) break;
          }
        } else if (type === 3) finish("rejected");
        else if (type === 7) finish("aborted");
        else if (type === 4) {
          // the response command: find Status (0000,0900) in its implicit VR elements
          const data = body.subarray(6);
          for (let p = 0; p + 8 <= data.length; ) {
            const tag = (data.readUInt16LE(p) << 16) | data.readUInt16LE(p + 2);
            const l = data.readUInt32LE(p + 4);
            if (tag === 0x0900) return finish(data.readUInt16LE(p + 8));
            p += 8 + l;
          }
        }
      }
    });
  });
}
