// Antri ticket verification for offline gates: the format of docs/tickets.md, checked
// exactly as qr/tokens.py checks it (tests/test_gate_js.py runs both on one token).
import { verifyAsync } from "../vendor/noble-ed25519.js";

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
const CONTEXT = new TextEncoder().encode("ANTRI-TICKET");
export const TOKEN_LENGTH = 119;
const BODY_LENGTH = 15;
const SIGNED_LENGTH = 79;

// Strict Base45 (RFC 9285): unknown characters, a dangling single character and
// groups over their range are errors. Written here rather than taken from npm because
// the npm "base45" package needs Node's Buffer and accepts all three.
export function b45decode(text) {
  const values = [];
  for (const ch of text) {
    const v = ALPHABET.indexOf(ch);
    if (v < 0) return null;
    values.push(v);
  }
  if (values.length % 3 === 1) return null;
  const out = [];
  for (let i = 0; i < values.length; i += 3) {
    if (values.length - i >= 3) {
      const n = values[i] + values[i + 1] * 45 + values[i + 2] * 2025;
      if (n > 0xffff) return null;
      out.push(n >> 8, n & 0xff);
    } else {
      const n = values[i] + values[i + 1] * 45;
      if (n > 0xff) return null;
      out.push(n);
    }
  }
  return Uint8Array.from(out);
}

function b64urlDecode(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

// Verify a scanned token against the published keys ([{kid, public_key}], GET
// /api/v1/keys). Returns {kid, bookingId, pointId, start, end} (Dates, UTC) or
// {error: "invalid_format" | "unknown_key" | "invalid_signature"}.
export async function verifyTicket(scanned, keys) {
  const text = scanned.replace(/^[\r\n\t]+|[\r\n\t]+$/g, "");
  // ASCII only before upper-casing: "ı".toUpperCase() is "I".
  if (text.length !== TOKEN_LENGTH || /[^\x00-\x7f]/.test(text)) return { error: "invalid_format" };
  const raw = b45decode(text.toUpperCase());
  if (!raw || raw.length !== SIGNED_LENGTH || raw[0] !== 1) return { error: "invalid_format" };
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const kid = view.getUint16(1);
  const key = (keys || []).find((k) => k.kid === kid);
  if (!key) return { error: "unknown_key" };
  const body = raw.slice(0, BODY_LENGTH);
  const message = new Uint8Array(CONTEXT.length + BODY_LENGTH);
  message.set(CONTEXT);
  message.set(body, CONTEXT.length);
  let ok = false;
  try {
    // zip215 false: RFC 8032's strict rules, as OpenSSL (behind qr/tokens.py) applies.
    ok = await verifyAsync(raw.slice(BODY_LENGTH), message, b64urlDecode(key.public_key), { zip215: false });
  } catch (e) {
    ok = false;
  }
  if (!ok) return { error: "invalid_signature" };
  const startMinutes = view.getUint32(9);
  const minutes = view.getUint16(13);
  return {
    kid,
    bookingId: view.getUint32(3),
    pointId: view.getUint16(7),
    start: new Date(startMinutes * 60000),
    end: new Date((startMinutes + minutes) * 60000),
  };
}
